"""The SPI on the wire: JSON-RPC 2.0 over ZeroMQ with InfraKit's method names and JSON shapes.

One module per contract, each holding both ends, as Go InfraKit's `pkg/rpc/{instance,flavor,
group}`: the handlers that serve an object implementing it, and the typed client that calls
one. `plugin` puts instance and flavor together behind one handshake; `common` is what they
share. docs/protocol.md describes every method.
"""
