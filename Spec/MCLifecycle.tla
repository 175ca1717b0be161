----------------------------- MODULE MCLifecycle -----------------------------
(***************************************************************************)
(* Model-checking wrapper for Lifecycle.tla: the symmetry of contexts,     *)
(* threads and slots.  Constants are set in the MCLifecycle*.cfg files.    *)
(***************************************************************************)
EXTENDS Lifecycle, TLC

Symmetry ==
    Permutations(Contexts) \cup Permutations(Threads) \cup Permutations(Slots)

(* A user who reaps events only through the library (Reap), never writing *)
(* the ring's head itself (UserWritesRingHead).                            *)
HonestUserNext ==
    Next /\ ~\E c \in Contexts, v \in RingIndex : UserWritesRingHead(c, v)
=============================================================================
