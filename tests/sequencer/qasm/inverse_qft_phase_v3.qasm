// A phase k/8 written on three qubits (the Fourier transform of |k>), read back by the
// semiclassical inverse QFT: each qubit is measured in turn and the bits already read turn the
// remaining qubits' phases back through feed-forward. `readout` must hold k on every shot.
// Written for ionpilot's tests.
OPENQASM 3.0;
include "stdgates.inc";

const uint[4] width = 3;
const uint[4] encoded = 5;
qubit[3] reg;
bit[3] readout;

// reg[j] carries the phase 2π·k·2^j/8
for uint j in [0:width - 1] {
  h reg[j];
  phase(2 * pi * encoded * (1 << j) / (1 << width)) reg[j];
}

// readout[m] is bit m of k (least significant first), read from reg[width - 1 - m]
for uint m in [0:width - 1] {
  for uint l in [0:width - 1] {
    if (l < m) {
      if (readout[l] == 1) {
        phase(-pi / (1 << (m - l))) reg[width - 1 - m];
      }
    }
  }
  h reg[width - 1 - m];
  readout[m] = measure reg[width - 1 - m];
}
