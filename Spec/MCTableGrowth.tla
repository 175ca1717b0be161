---------------------------- MODULE MCTableGrowth ----------------------------
(***************************************************************************)
(* Model-checking wrapper for TableGrowth.tla: the symmetry of reader      *)
(* threads and of contexts (used by the safety-only configs; TLC's         *)
(* symmetry reduction is unsound for liveness).  Constants are set in      *)
(* MCLifecycleTableGrowth.cfg and the MCLifecycle_*.cfg growth variants.   *)
(***************************************************************************)
EXTENDS TableGrowth, TLC

Symmetry == Permutations(Threads) \cup Permutations(Contexts)

(* Tables of 1 and 2 slots: one growth (a .cfg cannot write a tuple).     *)
MCCapacities == <<1, 2>>
=============================================================================
