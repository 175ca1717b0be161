------------------------------- MODULE MCRCU -------------------------------
(***************************************************************************)
(* Model-checks RCU.tla against its contract with an arbitrary client:     *)
(* threads enter and leave read sections of any flavor and queue           *)
(* callbacks on any flavor.  A ghost variable remembers, per callback, the *)
(* readers of its flavor that were inside a section at call_rcu time and   *)
(* have not left it since; the contract is that such a reader never        *)
(* coexists with the callback being ready (safety), and that every         *)
(* callback eventually runs when readers do not stay inside forever        *)
(* (liveness).                                                             *)
(*                                                                         *)
(* Bug selects a broken RCU core for TLC to refute:                        *)
(*   "CallJoinsGracePeriodInProgress"  call_rcu adds the callback to the   *)
(*        grace period in progress (CallRcuJoiningGracePeriod).            *)
(***************************************************************************)
EXTENDS RCU

CONSTANT Bug

ASSUME Bug \in {"None", "CallJoinsGracePeriodInProgress"}

VARIABLE mustWaitFor  \* ghost: mustWaitFor[cb], see above

vars == <<rcuVars, mustWaitFor>>

IsPending(cb) == \E f \in Flavors : cb \in Pending(f)

FlavorOf(cb) == CHOOSE f \in Flavors : cb \in Pending(f)

MCInit == Init /\ mustWaitFor = [cb \in Callbacks |-> {}]

Lock(t, f) == ReadLock(t, f) /\ UNCHANGED mustWaitFor

Unlock(t, f) ==
    /\ ReadUnlock(t, f)
    /\ mustWaitFor' = [cb \in Callbacks |->
                         IF IsPending(cb) /\ FlavorOf(cb) = f
                         THEN mustWaitFor[cb] \ {t}
                         ELSE mustWaitFor[cb]]

Call(f, cb) ==
    /\ ~IsPending(cb)
    /\ IF Bug = "CallJoinsGracePeriodInProgress"
       THEN CallRcuJoiningGracePeriod(f, cb)
       ELSE CallRcu(f, cb)
    /\ mustWaitFor' = [mustWaitFor EXCEPT ![cb] = rcuReaders[f]]

Start(f) == GpStart(f) /\ UNCHANGED mustWaitFor

End(f) == GpEnd(f) /\ UNCHANGED mustWaitFor

Invoke(f, cb) ==
    /\ InvokeCallback(f, cb)
    /\ mustWaitFor' = [mustWaitFor EXCEPT ![cb] = {}]

MCNext ==
    \/ \E t \in Threads, f \in Flavors : Lock(t, f) \/ Unlock(t, f)
    \/ \E f \in Flavors, cb \in Callbacks : Call(f, cb) \/ Invoke(f, cb)
    \/ \E f \in Flavors : Start(f) \/ End(f)

MCSpec ==
    /\ MCInit /\ [][MCNext]_vars
    /\ \A t \in Threads, f \in Flavors : WF_vars(Unlock(t, f))
    /\ \A f \in Flavors : WF_vars(Start(f)) /\ WF_vars(End(f))
    /\ \A f \in Flavors, cb \in Callbacks : WF_vars(Invoke(f, cb))

MCTypeOK ==
    /\ TypeOK
    /\ mustWaitFor \in [Callbacks -> SUBSET Threads]

(* A callback never becomes ready while a reader of its flavor that was    *)
(* inside a section when it was queued is still inside that section.       *)
CallbackWaitsForPreexistingReaders ==
    \A f \in Flavors : \A cb \in rcuCallbacks[f].ready : mustWaitFor[cb] = {}

(* An rcu_head is never queued twice, so each callback has one flavor.     *)
OneFlavorPerCallback ==
    \A cb \in Callbacks : \A f, g \in Flavors :
        cb \in Pending(f) /\ cb \in Pending(g) => f = g

CallbacksEventuallyRun ==
    \A cb \in Callbacks : IsPending(cb) ~> ~IsPending(cb)
=============================================================================
