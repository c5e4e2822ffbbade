OPENQASM 3.0;
include "stdgates.inc";
// two-qubit rotations the way programs bring them: as user definitions
gate rxx(theta) a, b { h a; h b; cx a, b; rz(theta) b; cx a, b; h a; h b; }
gate rzz(theta) a, b { cx a, b; rz(theta) b; cx a, b; }
gate ryy(theta) a, b { rx(pi/2) a; rx(pi/2) b; cx a, b; rz(theta) b; cx a, b; rx(-pi/2) a; rx(-pi/2) b; }
qubit[3] q;
bit[3] c;
rxx(pi/2) q[0], q[1];
rzz(0.3) q[1], q[2];
ryy(-0.7) q[0], q[2];
c = measure q;
