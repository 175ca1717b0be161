-------------------------- MODULE TableGrowthIndInv --------------------------
(***************************************************************************)
(* Bounded check (TLC, at the constants of each .cfg; not a proof for      *)
(* all constants): GrowthIndInv is an inductive invariant of               *)
(* Spec/TableGrowth.tla with Bug = "None", and it implies every safety     *)
(* invariant of that module.                                               *)
(*                                                                         *)
(*   TableGrowthIndInvBase.cfg  Init => GrowthIndInv                       *)
(*   TableGrowthIndInv.cfg      TypeOK /\ GrowthIndInv /\ Next             *)
(*                              => GrowthIndInv' and GrowthIndInv => the   *)
(*                              safety invariants: TLC starts from EVERY   *)
(*                              state satisfying GrowthIndInv /\ TypeOK,   *)
(*                              reachable or not, and checks them on all   *)
(*                              their successors.                          *)
(*   TableGrowthIndInvWide*.cfg the same two checks with three tables.     *)
(*                                                                         *)
(* As in LifecycleIndInv.tla, GrowthIndInv binds each variable from a      *)
(* bounded set before constraining it, so that TLC can enumerate it.       *)
(*                                                                         *)
(* What it says:                                                           *)
(*  - the current table holds exactly the live contexts, each in its ID's  *)
(*    slot; the table a growth copies into holds the slots copied so far,  *)
(*    and the growth holds the table lock, so nothing publishes or         *)
(*    unpublishes in between;                                              *)
(*  - a replaced table was full when it was replaced (growth starts only   *)
(*    then), so each of its slots names a context created in that slot;   *)
(*  - the pending callbacks are exactly the dead contexts' frees and the   *)
(*    replaced tables' kfree_rcu;                                          *)
(*  - the RCU fact: a reader holds up the callback of everything it may    *)
(*    still read (the replaced table it loaded, the dead contexts in that  *)
(*    table, the dead context it found): that callback is not ready, and   *)
(*    the grace period covering it, if any, waits for the reader.          *)
(***************************************************************************)
EXTENDS MCTableGrowth

Readers == {t \in Threads : reader[t] # Idle}

ContextsIn(k) == {slots[k][i] : i \in Slots(k)} \ {NoContext}

DueCallbacks ==
    {<<"ctx", c>> : c \in {x \in Contexts : ctxState[x] = "dead"}}
    \cup {<<"table", k>> : k \in {x \in TableIds : tableState[x] = "retired"}}

RCUInv == INSTANCE RCUIndInv WITH Flavors <- {TableFlavor}

(* The callbacks that free what reader t may still read.                   *)
HeldUpBy(t) ==
    CASE reader[t].phase = "table" ->
            {<<"table", k>> : k \in {reader[t].table} \ {current}}
            \cup {<<"ctx", c>> : c \in {x \in ContextsIn(reader[t].table) :
                                          ctxState[x] = "dead"}}
      [] reader[t].phase = "slot" ->
            {<<"ctx", c>> : c \in {x \in {reader[t].found} \cap Contexts :
                                     ctxState[x] = "dead"}}
      [] OTHER -> {}

GrowthIndInv ==
    \* The tables: one current, the earlier ones replaced, the later unused.
    /\ current \in TableIds
    /\ tableState \in [TableIds -> {"unused", "current", "retired", "freed"}]
    /\ OneCurrentTable
    \* Contexts and the current table.
    /\ ctxState \in [Contexts -> {"unused", "live", "dead", "freed"}]
    /\ slotOf \in [Contexts -> AllSlots \cup {0}]
    /\ \A c \in Contexts :
          IF ctxState[c] = "unused" THEN slotOf[c] = 0
                                    ELSE slotOf[c] \in Slots(current)
    /\ slots \in [TableIds -> [AllSlots -> Contexts \cup {NoContext}]]
    /\ \A k \in TableIds : \A i \in AllSlots \ Slots(k) :
          slots[k][i] = NoContext
    /\ TableHoldsExactlyTheLiveContexts
    /\ \A i \in Slots(current) :
          slots[current][i] # NoContext => slotOf[slots[current][i]] = i
    \* A replaced table was full, of contexts created in their slots.
    /\ \A k \in 1..current - 1 : \A i \in Slots(k) :
          /\ slots[k][i] # NoContext
          /\ slotOf[slots[k][i]] = i
    \* The growth in progress holds the lock and has copied the slots
    \* before next; a table not yet used is empty otherwise.
    /\ growth \in {NoGrowth} \cup [from: TableIds, to: TableIds,
                                   next: 1..Capacities[Len(Capacities)] + 1]
    /\ lock = IF Growing THEN "grow" ELSE "none"
    /\ Growing =>
          /\ GrowthCopiesIntoUnpublishedTable
          /\ growth.next <= Capacities[growth.from] + 1
          /\ FreeSlots(current) = {}
    /\ \A k \in (current + 1)..Len(Capacities) : \A i \in AllSlots :
          slots[k][i] = IF Growing /\ k = growth.to /\ i < growth.next
                        THEN slots[growth.from][i] ELSE NoContext
    \* Readers: the table they loaded is not freed, nor anything in it.
    /\ reader \in [Threads -> ReaderStates]
    /\ \A t \in Readers : ctxState[reader[t].ctx] # "unused"
    /\ \A t \in Threads : reader[t].phase = "table" =>
          /\ reader[t].table \in 1..current
          /\ tableState[reader[t].table] # "freed"
          /\ reader[t].found = NoContext
          /\ \A c \in ContextsIn(reader[t].table) : ctxState[c] # "freed"
    /\ \A t \in Threads : reader[t].phase = "slot" =>
          /\ reader[t].table = NoTable
          /\ reader[t].found # NoContext =>
                ctxState[reader[t].found] \in {"live", "dead"}
    \* RCU: the readers, the pending callbacks, the grace period.
    /\ rcuReaders = [f \in {TableFlavor} |-> Readers]
    /\ RCUInv!CallbacksPending(DueCallbacks, LAMBDA id : TableFlavor)
    /\ RCUInv!GracePeriodsMatchCallbacks
    \* A reader holds up the free of everything it may still read.
    /\ \A t \in Readers : \A id \in HeldUpBy(t) :
          RCUInv!HoldsUp(t, TableFlavor, id)

(* Tables of 1, 2 and 3 slots: two growths, two replaced tables at once.  *)
WideCapacities == <<1, 2, 3>>

(* GrowthIndInv binds every variable; TypeOK comes after it.               *)
IndInit == GrowthIndInv /\ TypeOK

(* For the base case: an action constraint no step satisfies, so TLC       *)
(* checks the initial state only.  (TLC rejects a constant FALSE.)         *)
NoStep == current' # current /\ current' = current
=============================================================================
