"""Nebula Command's core: resources, manifests, CRDs, the database and the event bus.

The core knows nothing of kopf, FastAPI, discord.py or twitchio; runtimes (``controllers``,
``nodes``, ``api``, ``bots``) import it, never the other way around.
"""

__version__ = "0.1.0"
