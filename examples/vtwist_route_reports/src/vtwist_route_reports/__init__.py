"""Example vtwist routing plugin: report queries go to replicas (see ``policy``)."""
