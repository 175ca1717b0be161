---------------------------- MODULE MBTPercpuRef ----------------------------
(***************************************************************************)
(* PercpuRef.tla as the model-based tests walk it on the Swift PercpuRef   *)
(* (Tests/ConformanceTests/PercpuRefModel*.swift).                          *)
(*                                                                         *)
(* Swift has no CPUs: a thread counts in its own counter area, and an      *)
(* exited thread's counts are folded into a count the switch also sums.    *)
(* The configurations therefore make CPUs the threads themselves (CPUs =   *)
(* Threads), and this module's action constraint keeps each thread on its  *)
(* own counter: PercpuOpDone(t, t) only.  Every other behaviour of         *)
(* PercpuRef.tla is kept.                                                  *)
(***************************************************************************)
EXTENDS PercpuRef

ASSUME CPUs = Threads

(* The step that finishes a thread's percpu get or put changes the counter *)
(* of that thread's own slot.                                              *)
NoMigration ==
    \A t \in Threads :
        (pending[t] # "none" /\ pending'[t] = "none") => ref'.pcpu[t] # ref.pcpu[t]
=============================================================================
