"""Edge runtime: camera -> TFLite -> pass/fail -> MQTT. Never imports TensorFlow."""
