"""The views over the port: typed values, the decorator, namespaces."""
