"""Online models: presets, snapshots, drift monitors and prequential evaluation (no Kafka here)."""
