------------------------- MODULE LifecycleRefinement -------------------------
(***************************************************************************)
(* Claim: the context lifecycle (Spec/Lifecycle.tla, Bug = "None")         *)
(* refines SafeReclamation.tla: a context is freed only after every        *)
(* thread that could reach it has left and every request on it completed.  *)
(*                                                                         *)
(* Refinement mapping: not yet published contexts are fresh, live ones     *)
(* reachable, dying ones retired, freed and failed ones freed; a thread    *)
(* reaches the context it has loaded under rcu_read_lock or holds a users  *)
(* reference on; the operations in flight are the requests in flight.      *)
(***************************************************************************)
EXTENDS Lifecycle, TLC

AbstractObj ==
    [c \in Contexts |->
        CASE ctxState[c] \in {"unused", "reserved"} -> "fresh"
          [] ctxState[c] = "live" -> "reachable"
          [] ctxState[c] = "dying" -> "retired"
          [] OTHER -> "freed"]

AbstractRefs == [t \in Threads |-> reader[t].ctx]

Abstract == INSTANCE SafeReclamation
    WITH Objects <- Contexts, NoObject <- NoContext,
         obj <- AbstractObj, refs <- AbstractRefs, ops <- inFlight

RefinesSafeReclamation == Abstract!Spec

AbstractNothingFreedIsReachable == Abstract!NothingFreedIsReachable
=============================================================================
