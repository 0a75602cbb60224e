"""Launchers for the real servers vtwist runs beside (MariaDB, ZooKeeper) and the local cluster.

Used by the integration tests and by ``vtwist up``: each server runs on a free loopback port
in a directory of its own and is stopped by its PID, never by name.
"""
