---------------------------- MODULE MCMemoryRegion ----------------------------
(***************************************************************************)
(* Model-checking wrapper for MemoryRegion.tla: the symmetry of threads    *)
(* (used by the safety-only configs; TLC's symmetry reduction is unsound   *)
(* for liveness).  Constants are set in the MCMemoryRegion*.cfg files.     *)
(***************************************************************************)
EXTENDS MemoryRegion, TLC

Symmetry == Permutations(Threads)
=============================================================================
