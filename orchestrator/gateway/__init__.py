"""The preview gateway: one asyncio process in front of every preview (orchestrator.gateway.proxy)."""
