OPENQASM 3.0;
include "stdgates.inc";
const int n = 4;
qubit[4] q;
bit[4] c;
x q[0];
x q[2];
for int j in [n - 1:-1:0] {
    h q[j];
    for int k in [j - 1:-1:0] {
        cp(pi / 2 ** (j - k)) q[k], q[j];
    }
}
swap q[0], q[3];
swap q[1], q[2];
c = measure q;
