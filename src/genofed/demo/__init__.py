"""The multi-country demo: three national nodes, a login issuer and a coordinator on loopback.

:func:`~genofed.demo.network.build` prepares everything on disk (idempotently) and
:func:`~genofed.demo.network.serving` runs it; `genofed demo` walks a researcher through it.
"""
