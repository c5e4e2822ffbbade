"""Audit entries the GUI tests' stand-in daemon serves (`get name=audit`)."""

# what the stand-in daemon's audit log holds: an ion-loss recovery before the console opened
AUDIT_ENTRIES = (
    {
        "wall_ns": 1_790_000_000_000_000_000,
        "source": "recovery",
        "kind": "trip",
        "action": "ion_loss",
        "reason": "servo.ion.fluorescence MAJOR (below LOLO 3000)",
        "severity": "MINOR",
    },
    {
        "wall_ns": 1_790_000_052_500_000_000,
        "source": "recovery",
        "kind": "resume",
        "action": "ion_loss",
        "reason": "recovered in 52.5 s",
        "severity": "OK",
    },
)
