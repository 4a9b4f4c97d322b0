"""Metric parsers, collectors (process- and file-attached), push API and the DBManager service."""
