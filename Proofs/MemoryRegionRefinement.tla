------------------------ MODULE MemoryRegionRefinement ------------------------
(***************************************************************************)
(* Claim: the memory-region lifecycle (Spec/MemoryRegion.tla, Bug =        *)
(* "None") refines FreedWhenUnreachable.tla: a region is given up only     *)
(* once it is unpublished, no thread can touch it and nothing else holds   *)
(* it.                                                                     *)
(*                                                                         *)
(* Refinement mapping.  A registered region is reachable while the         *)
(* lkey_table holds it, retired after the unpublish, and freed from the    *)
(* moment its release callback has finished: rvt_check_refs frees as soon  *)
(* as the completion fires, so from then on the region may be gone at any  *)
(* moment (the model's WaitAndFree, which also checks the count, is a      *)
(* stuttering step).  A thread holds the region it loaded under            *)
(* rcu_read_lock or holds a reference on.  The holds that belong to no     *)
(* thread: the references no thread holds (the owner's, the table's, the   *)
(* queue pairs'), percpu_ref's switch callback while pending, and the      *)
(* release callback from the moment it is due until it has finished (it    *)
(* completes mr->comp, inside the region: it is the hold whose end frees). *)
(*                                                                         *)
(* The variants: NoSynchronize and PutBeforeGracePeriod make the release   *)
(* due while a thread that loaded the region is still inside its lookup;   *)
(* IsZeroShortcut frees while the release callback is still due.  TLC      *)
(* refutes the refinement for each.                                        *)
(***************************************************************************)
EXTENDS MCMemoryRegion, FiniteSets

AbstractObj ==
    [r \in Regions |->
        CASE regionState[r] = "unused" -> "fresh"
          [] regionState[r] = "freed" \/ released[r] -> "freed"
          [] published[r] -> "reachable"
          [] OTHER -> "retired"]

AbstractHolders ==
    [r \in Regions |->
        {t \in Threads : reader[t] # Idle /\ reader[t].region = r}]

ReleaseDue(r) == ref[r].releases > 0 /\ ~released[r]

AbstractHolds ==
    [r \in Regions |->
        ref[r].count - Cardinality({t \in Threads : Holding(t, r)})
        + (IF <<"switch", r>> \in RCU!Pending(RefFlavor) THEN 1 ELSE 0)
        + (IF ReleaseDue(r) THEN 1 ELSE 0)]

Abstract == INSTANCE FreedWhenUnreachable
    WITH Objects <- Regions, obj <- AbstractObj, holders <- AbstractHolders,
         holds <- AbstractHolds

RefinesFreedWhenUnreachable == Abstract!Spec

AbstractNothingHoldsAFreedObject == Abstract!NothingHoldsAFreedObject
=============================================================================
