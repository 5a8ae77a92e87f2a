"""Federated analyses: allele frequencies, GWAS (linear and logistic), PCA and polygenic scores
across nodes, where only aggregates leave a node and the result equals the pooled analysis.

A job is one of a fixed set of reviewed types (:mod:`.spec`); nodes run no submitted code. It
runs in rounds. In each round every participating node computes local statistics over its own
individuals and genotypes (node side), masks them so that only their sum can be read
(:mod:`.secure`), and the coordinator sums, solves and decides the next round (coordinator side).

Layers, one module per concern:

* :mod:`.spec` -- what a researcher asks for;
* :mod:`.data` -- a node's individuals (cohort, trait, covariates) and genotypes as Dask arrays;
* :mod:`.harmonise` -- variants matched across nodes by (contig, pos, ref, alt) without a node
  showing which variants it holds;
* statistics and solvers, each a pair of pure functions or a small state machine: node side
  `..._statistics(...) -> dict[str, np.ndarray]` (arrays that are summed elementwise across
  nodes), coordinator side `combine`/`solve` over the summed dict:
  :mod:`.freq` (genotype counts, frequencies, HWE exact test, missingness), :mod:`.linear`,
  :mod:`.logistic` (Newton-Raphson with plink2's Firth fallback), :mod:`.pca` (subspace
  iteration), :mod:`.prs` (scores at each node, distributions out);
* :mod:`.secure` -- fixed-point encoding and pairwise masks (X25519 agreement, per-job and
  per-round ChaCha20 keystreams, sums modulo 2**64);
* the job protocol and its two ends -- :mod:`.protocol`, :mod:`.node`, :mod:`.coordinator`,
  :mod:`.jobs` (state that survives a coordinator restart), :mod:`.outputs` (GWAS-SSF, plots).

Every statistic is computed in float64 and checked against plink2 on the pooled data.
"""
