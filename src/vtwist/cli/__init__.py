"""The ``vtwist`` admin command (console script ``vtwist.cli.main:main``).

``main`` parses the command line and dispatches; each command family lives in its own
module listed in ``main.COMMAND_MODULES`` (``topo_cmds``: keyspace, shard, vschema,
tablets); ``common`` holds the shared context, output and exit codes.
"""
