// Teleportation of ry(0.9)·rz(0.6)|0> from `source` to `target`, then a post-rotation on the
// target: the phase is taken off again and the state tilted by 0.5 more, so the corrected bit
// reads 1 with probability sin²((0.9 + 0.5) / 2). Written for ionpilot's tests.
OPENQASM 3.0;
include "stdgates.inc";

qubit source;
qubit link;
qubit target;
bit sent_z;
bit sent_x;
bit result;

gate tilt_back(extra) t {
  rz(-0.6) t;
  ry(extra) t;
}

// the state to send
ry(0.9) source;
rz(0.6) source;
// a Bell pair shared by link and target
h link;
cx link, target;
// Bell measurement of source and link
cx source, link;
h source;
sent_z = measure source;
sent_x = measure link;
// corrections fed forward within the shot
if (sent_x == 1) {
  x target;
}
if (sent_z == 1) {
  z target;
}
tilt_back(0.5) target;
result = measure target;
