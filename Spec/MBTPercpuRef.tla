---------------------------- MODULE MBTPercpuRef ----------------------------
(***************************************************************************)
(* PercpuRef.tla as the model-based tests walk it on the Swift PercpuRef   *)
(* (Tests/ConformanceTests/PercpuRefModel*.swift).                          *)
(*                                                                         *)
(* Swift has no CPUs: a thread counts on the counter of its ThreadSlot,    *)
(* which it keeps until it exits.  The configurations therefore make CPUs  *)
(* the threads themselves (CPUs = Threads), and this module's action       *)
(* constraint keeps each thread on its own counter: PercpuOpDone(t, t)     *)
(* only.  Every other behaviour of PercpuRef.tla is kept.                  *)
(***************************************************************************)
EXTENDS PercpuRef

ASSUME CPUs = Threads

(* The step that finishes a thread's percpu get or put changes the counter *)
(* of that thread's own slot.                                              *)
NoMigration ==
    \A t \in Threads :
        (pending[t] # "none" /\ pending'[t] = "none") => ref'.pcpu[t] # ref.pcpu[t]
=============================================================================
