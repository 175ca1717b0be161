------------------------- MODULE FreedWhenUnreachable -------------------------
(***************************************************************************)
(* Safe reclamation when holds outlive the thread that took them: an       *)
(* object is freed only once it is unpublished (nobody new can reach it),  *)
(* no thread can touch it, and no other hold on it is left.                *)
(*                                                                         *)
(* SafeReclamation.tla counts only threads and the operations they start.  *)
(* Here a hold need not belong to a thread: a reference a queue pair or    *)
(* the table keeps, a callback still to run on the object (a percpu_ref    *)
(* switch, a release).  A thread may hand its hold over (StartOp and      *)
(* LetGo in one step, which SafeReclamation cannot take), and holds may    *)
(* beget holds, but only existing holds can: once an unpublished object is *)
(* unheld, nothing can ever hold it again.                                 *)
(*                                                                         *)
(* Three ways to free, all safe for that reason:                           *)
(*   Free             an unpublished object nobody holds (after kfree_rcu's *)
(*                    grace period, after a wait for the last reference);  *)
(*   FreeByLastHold   the last hold, not a thread's, frees the object as   *)
(*                    it ends (a release callback that completes the free); *)
(*   UnpublishAndFree unpublish and free in one step, nobody holding it     *)
(*                    (what a kfree without kfree_rcu gets away with when  *)
(*                    no reader is inside).                                *)
(*                                                                         *)
(* TableGrowthRefinement.tla and MemoryRegionRefinement.tla check that     *)
(* Spec/TableGrowth.tla (the tables) and Spec/MemoryRegion.tla (the        *)
(* regions) implement it.                                                  *)
(***************************************************************************)
EXTENDS Naturals

CONSTANTS Objects, Threads

VARIABLES
    obj,      \* obj[o]: "fresh", "reachable", "retired" or "freed"
    holders,  \* holders[o]: threads that can touch o (loaded it, hold it)
    holds     \* holds[o]: holds on o that belong to no thread

vars == <<obj, holders, holds>>

TypeOK ==
    /\ obj \in [Objects -> {"fresh", "reachable", "retired", "freed"}]
    /\ holders \in [Objects -> SUBSET Threads]
    /\ holds \in [Objects -> Nat]

(* Some objects may be published from the start (a table's first array).  *)
Init ==
    /\ obj \in [Objects -> {"fresh", "reachable"}]
    /\ holders = [o \in Objects |-> {}]
    /\ holds = [o \in Objects |-> 0]

Unheld(o) == holders[o] = {} /\ holds[o] = 0

(* Only o's holds change, to any count (holds'[o] is given by the step).   *)
HoldsOfOnlyChange(o) ==
    /\ holds'[o] \in Nat
    /\ holds' = [holds EXCEPT ![o] = holds'[o]]

(* Published with the holds it is created with (its initial references).   *)
Publish(o) ==
    /\ obj[o] = "fresh"
    /\ obj' = [obj EXCEPT ![o] = "reachable"]
    /\ HoldsOfOnlyChange(o)
    /\ UNCHANGED holders

(* A thread finds a published object.                                      *)
Reach(t, o) ==
    /\ obj[o] = "reachable"
    /\ t \notin holders[o]
    /\ holders' = [holders EXCEPT ![o] = @ \cup {t}]
    /\ UNCHANGED <<obj, holds>>

(* Holders let go, hand their holds on, end them or take further ones: a   *)
(* hold comes only from a hold.                                            *)
Rehold(o) ==
    /\ holders[o] # {} \/ holds[o] > 0
    /\ holders'[o] \subseteq holders[o]
    /\ holders' = [holders EXCEPT ![o] = holders'[o]]
    /\ HoldsOfOnlyChange(o)
    /\ UNCHANGED obj

Retire(o) ==
    /\ obj[o] = "reachable"
    /\ obj' = [obj EXCEPT ![o] = "retired"]
    /\ UNCHANGED <<holders, holds>>

Free(o) ==
    /\ obj[o] = "retired"
    /\ Unheld(o)
    /\ obj' = [obj EXCEPT ![o] = "freed"]
    /\ UNCHANGED <<holders, holds>>

FreeByLastHold(o) ==
    /\ obj[o] = "retired"
    /\ holders[o] = {}
    /\ holds[o] = 1
    /\ obj' = [obj EXCEPT ![o] = "freed"]
    /\ holds' = [holds EXCEPT ![o] = 0]
    /\ UNCHANGED holders

UnpublishAndFree(o) ==
    /\ obj[o] = "reachable"
    /\ Unheld(o)
    /\ obj' = [obj EXCEPT ![o] = "freed"]
    /\ UNCHANGED <<holders, holds>>

Next ==
    \E o \in Objects :
        \/ Publish(o) \/ Rehold(o) \/ Retire(o)
        \/ Free(o) \/ FreeByLastHold(o) \/ UnpublishAndFree(o)
        \/ \E t \in Threads : Reach(t, o)

Spec == Init /\ [][Next]_vars

(* What the abstraction buys: nothing holds a freed object.                *)
NothingHoldsAFreedObject == \A o \in Objects : obj[o] = "freed" => Unheld(o)
=============================================================================
