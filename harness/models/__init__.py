"""Engine-level model adapters (the scripted test double; remote and local back-ends to come)."""
