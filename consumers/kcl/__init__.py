"""The KCL engine: the real MultiLangDaemon (amazon-kclpy) running gorse-cdc's record path.

properties.py  the daemon's properties, derived from the one Settings object (pure)
daemon.py      finds the jars and Java, runs the daemon, forwards SIGTERM
runtime.py     the apply path of one shard (the native engine's parts, on a background loop)
processor.py   the amazon-kclpy v3 record processor: apply a batch fully, then checkpoint
__main__.py    the program the daemon starts once per shard (``python -m consumers.kcl``)
"""
