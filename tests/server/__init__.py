"""Tests of the local Async-compatible server, with raw WebSocket and HTTP clients."""
