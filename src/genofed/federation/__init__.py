"""Federation: network membership, peer request signatures, the coordinator (hub) that fans a
researcher's request out to every member, and the merged Beacon network answer."""
