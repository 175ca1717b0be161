----------------------------- MODULE MCPercpuRef -----------------------------
(***************************************************************************)
(* Model-checking wrapper for PercpuRef.tla.                               *)
(***************************************************************************)
EXTENDS PercpuRef, TLC

(* Threads migrate, so one CPU's counter can drift without bound (get on   *)
(* one CPU, put on another, repeat).  The model stops exploring past a     *)
(* drift of PcpuDrift; the drift itself plays no role in any property.     *)
PcpuDrift == 2

PcpuBounded == \A c \in CPUs : ref.pcpu[c] \in -PcpuDrift..PcpuDrift

Symmetry == Permutations(Threads) \cup Permutations(CPUs)
=============================================================================
