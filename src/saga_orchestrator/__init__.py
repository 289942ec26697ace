"""pyairtable-saga-orchestrator: durable sagas for microservices, on trio."""

__version__ = "0.1.0"
