----------------------------- MODULE MCLifecycle -----------------------------
(***************************************************************************)
(* Model-checking wrapper for Lifecycle.tla: the symmetry of contexts,     *)
(* threads and slots.  Constants are set in the MCLifecycle*.cfg files.    *)
(***************************************************************************)
EXTENDS Lifecycle, TLC

Symmetry ==
    Permutations(Contexts) \cup Permutations(Threads) \cup Permutations(Slots)
=============================================================================
