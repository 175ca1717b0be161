------------------------ MODULE TableGrowthRefinement ------------------------
(***************************************************************************)
(* Claim: the kioctx table's growth (Spec/TableGrowth.tla, Bug = "None")   *)
(* refines FreedWhenUnreachable.tla for its tables: a replaced table is    *)
(* freed only once no reader can reach it.                                 *)
(*                                                                         *)
(* Refinement mapping.  The current table is reachable, a replaced one     *)
(* retired until its kfree_rcu runs, then freed.  The table a growth       *)
(* copies into counts as published from the growth's start: publishing it  *)
(* and retiring the old one happen in one step (rcu_assign_pointer), and   *)
(* the abstract spec takes one change of one object a step; no reader can  *)
(* reach it before that step anyway.  A reader holds the table whose       *)
(* pointer it loaded until it loads the slot; nothing else holds a table.  *)
(* The contexts are not mapped (their frees are Lifecycle.tla's; the       *)
(* inductive invariant of TableGrowthIndInv.tla covers them here).         *)
(*                                                                         *)
(* With Bug = "OldTableFreedWithoutGracePeriod" the old table is           *)
(* unpublished and freed in one step; the abstract spec allows that only   *)
(* while no reader holds it, so TLC refutes the refinement exactly when a  *)
(* reader that loaded the old table is still inside its lookup.           *)
(***************************************************************************)
EXTENDS MCTableGrowth

AbstractObj ==
    [k \in TableIds |->
        CASE tableState[k] = "unused" ->
                IF Growing /\ k = growth.to THEN "reachable" ELSE "fresh"
          [] tableState[k] = "current" -> "reachable"
          [] tableState[k] = "retired" -> "retired"
          [] OTHER -> "freed"]

AbstractHolders ==
    [k \in TableIds |->
        {t \in Threads : reader[t].phase = "table" /\ reader[t].table = k}]

Abstract == INSTANCE FreedWhenUnreachable
    WITH Objects <- TableIds, obj <- AbstractObj, holders <- AbstractHolders,
         holds <- [k \in TableIds |-> 0]

RefinesFreedWhenUnreachable == Abstract!Spec

AbstractNothingHoldsAFreedObject == Abstract!NothingHoldsAFreedObject
=============================================================================
