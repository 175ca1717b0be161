---------------------------- MODULE SafeReclamation ----------------------------
(***************************************************************************)
(* Safe memory reclamation in the abstract: an object is freed only after  *)
(* every thread that could reach it has let go of it and every operation   *)
(* started on it has finished.  Threads reach an object only while it is   *)
(* published; once retired (unpublished) nobody new can reach it.          *)
(* Objects that were never published may be discarded at once.             *)
(* LifecycleRefinement.tla checks that Spec/Lifecycle.tla implements it.   *)
(***************************************************************************)
EXTENDS Naturals

CONSTANTS Objects, Threads, NoObject

VARIABLES
    obj,    \* obj[o]: "fresh", "reachable", "retired" or "freed"
    refs,   \* refs[t]: the object thread t may touch, or NoObject
    ops     \* ops[o]: operations on o started and not finished

vars == <<obj, refs, ops>>

TypeOK ==
    /\ obj \in [Objects -> {"fresh", "reachable", "retired", "freed"}]
    /\ refs \in [Threads -> Objects \cup {NoObject}]
    /\ ops \in [Objects -> Nat]

Init ==
    /\ obj = [o \in Objects |-> "fresh"]
    /\ refs = [t \in Threads |-> NoObject]
    /\ ops = [o \in Objects |-> 0]

Publish(o) ==
    /\ obj[o] = "fresh"
    /\ obj' = [obj EXCEPT ![o] = "reachable"]
    /\ UNCHANGED <<refs, ops>>

Discard(o) ==
    /\ obj[o] = "fresh"
    /\ obj' = [obj EXCEPT ![o] = "freed"]
    /\ UNCHANGED <<refs, ops>>

Reach(t, o) ==
    /\ refs[t] = NoObject
    /\ obj[o] = "reachable"
    /\ refs' = [refs EXCEPT ![t] = o]
    /\ UNCHANGED <<obj, ops>>

LetGo(t) ==
    /\ refs[t] # NoObject
    /\ refs' = [refs EXCEPT ![t] = NoObject]
    /\ UNCHANGED <<obj, ops>>

StartOp(t, o) ==
    /\ refs[t] = o
    /\ ops' = [ops EXCEPT ![o] = @ + 1]
    /\ UNCHANGED <<obj, refs>>

FinishOp(o) ==
    /\ ops[o] > 0
    /\ ops' = [ops EXCEPT ![o] = @ - 1]
    /\ UNCHANGED <<obj, refs>>

Retire(o) ==
    /\ obj[o] = "reachable"
    /\ obj' = [obj EXCEPT ![o] = "retired"]
    /\ UNCHANGED <<refs, ops>>

Free(o) ==
    /\ obj[o] = "retired"
    /\ \A t \in Threads : refs[t] # o
    /\ ops[o] = 0
    /\ obj' = [obj EXCEPT ![o] = "freed"]
    /\ UNCHANGED <<refs, ops>>

Next ==
    \/ \E o \in Objects : Publish(o) \/ Discard(o) \/ FinishOp(o)
                          \/ Retire(o) \/ Free(o)
    \/ \E t \in Threads : LetGo(t) \/ \E o \in Objects : Reach(t, o) \/ StartOp(t, o)

Spec == Init /\ [][Next]_vars

(* What the abstraction buys: nobody ever touches a freed object.          *)
NothingFreedIsReachable ==
    /\ \A t \in Threads : refs[t] # NoObject => obj[refs[t]] # "freed"
    /\ \A o \in Objects : obj[o] = "freed" => ops[o] = 0
=============================================================================
