------------------------------ MODULE RCUIndInv ------------------------------
(***************************************************************************)
(* The RCU part of the inductive invariants (LifecycleIndInv.tla,          *)
(* TableGrowthIndInv.tla, MemoryRegionIndInv.tla): the callback queues     *)
(* hold exactly the callbacks due, the grace periods match them, and a     *)
(* reader holds up a callback queued after it entered its read section.    *)
(*                                                                         *)
(* Each client instantiates it with its own RCU variables (Spec/RCU.tla's).*)
(* Written for TLC's enumeration of an initial predicate:                  *)
(* CallbacksPending binds rcuCallbacks, and GracePeriodsMatchCallbacks     *)
(* rcuGp, from a bounded set before constraining it; rcuReaders must be    *)
(* bound before the latter.                                                *)
(***************************************************************************)
CONSTANTS Threads, Flavors

VARIABLES rcuReaders, rcuGp, rcuCallbacks

(* rcuCallbacks holds exactly the callbacks ids, each in the queues of the *)
(* flavor FlavorOf gives it, at any stage.                                 *)
CallbacksPending(ids, FlavorOf(_)) ==
    rcuCallbacks \in
        {[f \in Flavors |->
            [queued |-> {id \in ids : FlavorOf(id) = f /\ stage[id] = "queued"},
             waiting |-> {id \in ids : FlavorOf(id) = f /\ stage[id] = "waiting"},
             ready |-> {id \in ids : FlavorOf(id) = f /\ stage[id] = "ready"}]]
         : stage \in [ids -> {"queued", "waiting", "ready"}]}

(* A grace period is in progress exactly while it covers callbacks, and it *)
(* waits only for readers still inside the section they were in when it    *)
(* started.                                                                *)
GracePeriodsMatchCallbacks ==
    /\ rcuGp \in [Flavors -> [active: BOOLEAN, waitFor: SUBSET Threads]]
    /\ \A f \in Flavors :
          /\ rcuGp[f].active <=> rcuCallbacks[f].waiting # {}
          /\ rcuGp[f].waitFor \subseteq rcuReaders[f]
          /\ ~rcuGp[f].active => rcuGp[f].waitFor = {}

(* Reader t, inside a read section of f since before callback id of f was *)
(* queued, holds it up: id is not ready, and a grace period covering it    *)
(* waits for t.                                                            *)
HoldsUp(t, f, id) ==
    /\ id \notin rcuCallbacks[f].ready
    /\ id \in rcuCallbacks[f].waiting => t \in rcuGp[f].waitFor
=============================================================================
