// Repeat until success: ry(phi / 2) on `target`, built from a controlled ry(phi) and a helper
// measured in the x basis. A helper reading 0 has applied ry(phi / 2); reading 1 has applied
// ry(phi / 2)·y, which is undone before trying again. How many tries a shot needs is only known
// during the shot. Finally P(target = 1) = sin²(phi / 4). Written for ionpilot's tests.
OPENQASM 3.0;
include "stdgates.inc";

const float[64] phi = 2.4;
qubit target;
qubit helper;
bit failed = 1;
bit out;

while (failed == 1) {
  reset helper;
  h helper;
  cry(phi) helper, target;
  h helper;
  failed = measure helper;
  if (failed == 1) {
    ry(-phi / 2) target;
    y target;
  }
}
out = measure target;
