"""The edge agent: MQTT from the boards in, a durable buffer, gRPC to the cloud."""
