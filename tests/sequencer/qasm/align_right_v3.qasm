// Right alignment inside a box: the ry on $2 waits `lead`, plays, then waits three times
// `lead`, so that its path lasts exactly as long as the two entangling gates on $0 and $1
// (lead + t_ry + 3 lead = 2 t_cx). Written for ionpilot's tests.
OPENQASM 3.0;
include "stdgates.inc";

stretch lead;
bit[3] c;

box {
  cx $0, $1;
  cx $1, $0;
  delay[lead] $2;
  ry(0.4) $2;
  delay[3 * lead] $2;
}
barrier $0, $1, $2;
c[0] = measure $0;
c[1] = measure $1;
c[2] = measure $2;
