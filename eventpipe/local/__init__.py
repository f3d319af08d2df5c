"""The local stack: moto server as AWS, a search server, the HTTP API and the event-source runner."""
