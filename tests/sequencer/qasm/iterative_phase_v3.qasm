// Iterative phase estimation of u = phase(2π·5/8) on its eigenstate |1>, with one ancilla
// reused three times. Round r applies u^(2^k), k = 2 - r, controlled on the ancilla, and
// removes the share of the bits already read with a feedback angle computed during the shot
// from them; `bits` holds 5 (binary 101, bits[0] read first) on every shot.
// Written for ionpilot's tests.
OPENQASM 3.0;
include "stdgates.inc";

const uint[4] rounds = 3;
const uint[4] numerator = 5;
qubit ancilla;
qubit eigen;
bit[3] bits;
angle[8] feedback = 0;

x eigen;
for uint r in [0:rounds - 1] {
  reset ancilla;
  h ancilla;
  ctrl @ pow(1 << (rounds - 1 - r)) @ phase(2 * pi * numerator / (1 << rounds)) ancilla, eigen;
  phase(-feedback) ancilla;
  h ancilla;
  bits[r] = measure ancilla;
  // the next round's correction: half of (this one plus π times the bit just read)
  feedback = feedback / 2;
  if (bits[r] == 1) {
    feedback += pi / 2;
  }
}
