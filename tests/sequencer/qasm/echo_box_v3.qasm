// A CPMG echo on $0 (four y pulses centred at tau, 3 tau, 5 tau and 7 tau from the box's
// start) beside an entangling sequence on $1 and $2 that sets the box's length: one stretch
// tau, solved so the echo fills the box exactly (box = 8 tau). Written for ionpilot's tests.
OPENQASM 3.0;
include "stdgates.inc";

stretch tau;
duration outer = tau - 0.5 * durationof({y $0;});
duration inner = 2 * tau - durationof({y $0;});
bit[3] c;

box {
  delay[outer] $0;
  y $0;
  delay[inner] $0;
  y $0;
  delay[inner] $0;
  y $0;
  delay[inner] $0;
  y $0;
  delay[outer] $0;

  cx $1, $2;
  rx(0.7) $2;
  cx $1, $2;
  rx(0.7) $1;
}
c[0] = measure $0;
c[1] = measure $1;
c[2] = measure $2;
