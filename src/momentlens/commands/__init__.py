"""The glue of each ``momentlens`` command: load runs, call the layers below, print, write
files. One module per command group; each command is ``run_<name>(args)`` (or ``run`` when
the module holds one command), taking the parsed ``argparse.Namespace`` and returning the
exit status. :mod:`momentlens.cli` imports a module only when its command runs, so
``momentlens --help`` stays instant.
"""
