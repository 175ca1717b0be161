------------------------- MODULE MemoryRegionIndInv -------------------------
(***************************************************************************)
(* Bounded check (TLC, at the constants of each .cfg; not a proof for      *)
(* all constants): RegionIndInv is an inductive invariant of               *)
(* Spec/MemoryRegion.tla with Bug = "None", and it implies every safety    *)
(* property of that module.                                                *)
(*                                                                         *)
(*   MemoryRegionIndInvBase.cfg  Init => RegionIndInv                      *)
(*   MemoryRegionIndInv.cfg      TypeOK /\ RegionIndInv /\ Next            *)
(*                               => RegionIndInv' and RegionIndInv => the  *)
(*                               safety invariants and, for one step,      *)
(*                               PlainGetNeverRevives: TLC starts from     *)
(*                               EVERY state satisfying RegionIndInv /\    *)
(*                               TypeOK, reachable or not.                 *)
(*   MemoryRegionIndInvWide*.cfg the same two checks with two regions    *)
(*                               and one flavor (the Swift code's, and the *)
(*                               kernel's since 4.20).                     *)
(*                                                                         *)
(* As in LifecycleIndInv.tla, RegionIndInv binds each variable from a      *)
(* bounded set before constraining it, so that TLC can enumerate it.       *)
(*                                                                         *)
(* What it says: the deregistration's step fixes everything else.          *)
(*  - the count is exactly the holders', the queue pairs', the table's     *)
(*    (until putTable) and the owner's (until kill), in the mode the       *)
(*    registration chose, switching to atomic after the kill;              *)
(*  - the synchronize's callback is pending exactly between syncStart and  *)
(*    syncEnd, the switch's exactly while the switch is in flight;         *)
(*  - the RCU fact behind the plain get: a thread that loaded the region   *)
(*    did so before the unpublish, so the synchronize's grace period waits *)
(*    for it, and no loader is left once the synchronize has returned.   *)
(***************************************************************************)
EXTENDS MCMemoryRegion, FiniteSets

Holders(r) == {t \in Threads : Holding(t, r)}
Loaders(r) == {t \in Threads : Loading(t, r)}

StepOf(name) == CHOOSE i \in 1..Len(Order) : Order[i] = name

Registered(r) == regionState[r] # "unused"
DeregistrationStarted(r) ==
    regionState[r] \in {"deregistering", "timedOut", "freed"}
(* r's deregistration has taken the step called name (Order[step[r]] is   *)
(* the next one).                                                          *)
Past(r, name) == DeregistrationStarted(r) /\ step[r] > StepOf(name)

(* ref[r], given the mode its registration chose and whether the switch   *)
(* the kill started has been confirmed.                                    *)
ExpectedRef(r, initMode, confirmed) ==
    LET atomicNow == initMode = "atomic" \/ confirmed
        n == Cardinality(Holders(r)) + dependents[r]
               + (IF Past(r, "putTable") THEN 0 ELSE 1)
               + (IF Past(r, "kill") THEN 0 ELSE 1)
    IN CASE ~Registered(r) -> NoRef
         [] ~Past(r, "kill") -> [NewRef(initMode) EXCEPT !.count = n]
         [] OTHER -> [count |-> n,
                      mode |-> IF atomicNow THEN "atomic" ELSE "switching",
                      dead |-> TRUE,
                      forceAtomic |-> initMode = "atomic",
                      releases |-> IF atomicNow /\ n = 0 THEN 1 ELSE 0]

DueCallbacks ==
    {<<"sync", r>> : r \in {x \in Regions :
                              Past(x, "syncStart") /\ ~Past(x, "syncEnd")}}
    \cup {<<"switch", r>> : r \in {x \in Regions : ref[x].mode = "switching"}}

FlavorOfCallback(id) == IF id[1] = "sync" THEN TableFlavor ELSE RefFlavor

RCUInv == INSTANCE RCUIndInv

RegionIndInv ==
    \* The registration and the deregistration's progress.
    /\ regionState \in [Regions -> RegionStates]
    /\ step \in [Regions -> 1..Len(Order)]
    /\ \A r \in Regions :
          /\ regionState[r] \in {"unused", "live"} => step[r] = 1
          /\ regionState[r] \in {"timedOut", "freed"} =>
                Order[step[r]] = "wait"
    /\ published = [r \in Regions |-> Registered(r) /\ ~Past(r, "unpublish")]
    /\ dependents \in [Regions -> 0..MaxDependents]
    /\ cleaned = [r \in Regions |-> Past(r, "dropDependents")]
    /\ \A r \in Regions :
          (~Registered(r) \/ Past(r, "dropDependents")) => dependents[r] = 0
    /\ frees = [r \in Regions |-> IF regionState[r] = "freed" THEN 1 ELSE 0]
    \* Threads: a loader loaded the region before its unpublish and is gone
    \* once the grace period has ended; a holder's reference is counted.
    /\ reader \in [Threads -> ReaderStates]
    /\ \A t \in Threads : reader[t] # Idle =>
          regionState[reader[t].region] \in
              {"live", "deregistering", "timedOut"}
    /\ \A r \in Regions : Loaders(r) # {} => ~Past(r, "syncEnd")
    /\ rcuReaders = [f \in Flavors |->
                       IF f = TableFlavor
                       THEN {t \in Threads : reader[t].phase = "loaded"}
                       ELSE {}]
    \* The reference and its release.
    /\ ref \in {[r \in Regions |-> ExpectedRef(r, m[r], confirmed[r])] :
                  m \in [Regions -> RefInitModes],
                  confirmed \in [Regions -> BOOLEAN]}
    /\ released \in [Regions -> BOOLEAN]
    /\ \A r \in Regions :
          /\ released[r] => ref[r].releases = 1
          /\ regionState[r] = "freed" => released[r]
    \* RCU: the pending callbacks and the grace periods covering them.
    /\ RCUInv!CallbacksPending(DueCallbacks, FlavorOfCallback)
    /\ RCUInv!GracePeriodsMatchCallbacks
    \* The synchronize waits for every thread that loaded the region.
    /\ \A r \in Regions : \A t \in Loaders(r) :
          RCUInv!HoldsUp(t, TableFlavor, <<"sync", r>>)

(* RegionIndInv binds every variable; TypeOK comes after it.               *)
IndInit == RegionIndInv /\ TypeOK

(* For the base case: an action constraint no step satisfies, so TLC       *)
(* checks the initial state only.  (TLC rejects a constant FALSE.)         *)
NoStep == frees' # frees /\ frees' = frees
=============================================================================
