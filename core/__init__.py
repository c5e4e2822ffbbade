"""The small shared core below the bus: the injectable clock, units, durable writes, back-off.

Nothing here imports zmq, Qt or any other subsystem of ours, so every subsystem (the simulated
world included) may use it.
"""
