"""The accelerated lab: the daemon's own LockCycle, health and recovery on virtual time against the World in process; fault campaigns and their statistics (clock-sim)."""
