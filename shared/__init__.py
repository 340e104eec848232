"""What producer and consumer share: contracts (models, errors, settings, ports, keys), pure rules,
the stores over the KV port and the backends.
"""
