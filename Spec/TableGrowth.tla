----------------------------- MODULE TableGrowth -----------------------------
(***************************************************************************)
(* The kioctx table growing under RCU (fs/aio.c, ioctx_add_table): when   *)
(* every slot of mm->ioctx_table is taken, a larger table is allocated,    *)
(* the slots are copied into it under mm->ioctx_lock, it is published with *)
(* rcu_assign_pointer, and the old table is freed with kfree_rcu.  A       *)
(* lookup (lookup_ioctx) dereferences the table pointer and then the slot, *)
(* two loads inside one read section.                                      *)
(*                                                                         *)
(* Lifecycle.tla models one table that never grows, and contexts whose     *)
(* free waits for a grace period of the table's flavor after their         *)
(* unpublish (its NoUseAfterFree).  This module takes that guarantee as    *)
(* given (a destroy queues the context's free as an RCU callback) and adds *)
(* what growth changes: the table itself is replaced and freed, and the    *)
(* slots are carried over from one table to the next.  Its invariants are  *)
(* the two that growth can break: readers never read a freed table, and   *)
(* the table readers find holds exactly the live contexts (so a lookup     *)
(* neither misses a live context nor finds a destroyed one, which would    *)
(* be freed under it).                                                     *)
(*                                                                         *)
(* Swift: ContextTable.publish/install, SlotTable, GrowUnderTableLock.     *)
(*                                                                         *)
(* Bug selects a broken growth for TLC to refute:                          *)
(*   "OldTableFreedWithoutGracePeriod"  the old table is freed at once     *)
(*        (kfree where kfree_rcu belongs), under readers that loaded it.   *)
(*   "TableGrowthLosesSlot"  the slots are copied without the table lock, *)
(*        so a publish or an unpublish between the copy and the switch is  *)
(*        lost.                                                            *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS
    Contexts,     \* contexts; each is created at most once
    Threads,      \* reader threads (lookup_ioctx callers)
    Capacities,   \* Capacities[k]: slots of the k-th table (growth order)
    TableFlavor,  \* the flavor of the table's readers and of kfree_rcu
    Bug

Bugs == {"None", "OldTableFreedWithoutGracePeriod", "TableGrowthLosesSlot"}

TableIds == 1..Len(Capacities)
Slots(k) == 1..Capacities[k]
AllSlots == 1..Capacities[Len(Capacities)]
NoContext == "none"
NoTable == 0

ASSUME /\ Bug \in Bugs
       /\ Len(Capacities) > 0
       /\ \A k \in TableIds : Capacities[k] \in Nat \ {0}
       /\ \A k \in 1..Len(Capacities) - 1 : Capacities[k] < Capacities[k + 1]
       /\ NoContext \notin Contexts

VARIABLES
    ctxState,     \* ctxState[c]: "unused", "live", "dead" (destroyed), "freed"
    slotOf,       \* slotOf[c]: the slot c was published in (its ID's slot)
    current,      \* the table mm->ioctx_table points to
    tableState,   \* tableState[k]: "unused", "current", "retired", "freed"
    slots,        \* slots[k][i]: the context in slot i of table k
    lock,         \* the table lock's holder: "none" or "grow"
    growth,       \* the growth in progress: from, to, next slot to copy
    reader,       \* reader[t]: the lookup thread t is doing
    rcuReaders, rcuGp, rcuCallbacks

rcuVars == <<rcuReaders, rcuGp, rcuCallbacks>>
tableVars == <<current, tableState, slots, lock, growth>>
vars == <<ctxState, slotOf, tableVars, reader, rcuVars>>

(* The rcu_heads: a context's free (queued by its teardown, as in          *)
(* Lifecycle) and a replaced table's kfree_rcu.                            *)
CallbackIds == ({"ctx"} \X Contexts) \cup ({"table"} \X TableIds)

RCU == INSTANCE RCU WITH Flavors <- {TableFlavor}, Callbacks <- CallbackIds

NoGrowth == [from |-> NoTable, to |-> NoTable, next |-> 0]
Idle == [phase |-> "idle", ctx |-> NoContext, table |-> NoTable,
         found |-> NoContext]
(* A lookup of ctx: "table" (in its section, the table pointer loaded),    *)
(* "slot" (the slot loaded: found; the table no longer matters).           *)
ReaderStates ==
    {Idle} \cup [phase: {"table", "slot"}, ctx: Contexts,
                 table: TableIds \cup {NoTable},
                 found: Contexts \cup {NoContext}]

TypeOK ==
    /\ ctxState \in [Contexts -> {"unused", "live", "dead", "freed"}]
    /\ slotOf \in [Contexts -> AllSlots \cup {0}]
    /\ current \in TableIds
    /\ tableState \in [TableIds -> {"unused", "current", "retired", "freed"}]
    /\ slots \in [TableIds -> [AllSlots -> Contexts \cup {NoContext}]]
    /\ lock \in {"none", "grow"}
    /\ growth \in {NoGrowth} \cup [from: TableIds, to: TableIds,
                                   next: 1..Capacities[Len(Capacities)] + 1]
    /\ reader \in [Threads -> ReaderStates]
    /\ RCU!TypeOK

Init ==
    /\ ctxState = [c \in Contexts |-> "unused"]
    /\ slotOf = [c \in Contexts |-> 0]
    /\ current = 1
    /\ tableState = [k \in TableIds |-> IF k = 1 THEN "current" ELSE "unused"]
    /\ slots = [k \in TableIds |-> [i \in AllSlots |-> NoContext]]
    /\ lock = "none"
    /\ growth = NoGrowth
    /\ reader = [t \in Threads |-> Idle]
    /\ RCU!Init

FreeSlots(k) == {i \in Slots(k) : slots[k][i] = NoContext}
Growing == growth # NoGrowth

-----------------------------------------------------------------------------
(* Updaters.  Each publish and unpublish is one step under the table lock: *)
(* nothing else that takes the lock interleaves with it.                   *)

(* ioctx_add_table: the first free slot of the current table, filled with  *)
(* rcu_assign_pointer under mm->ioctx_lock.  Swift: ContextTable.publish.  *)
Create(c) ==
    /\ ctxState[c] = "unused"
    /\ lock = "none"
    /\ FreeSlots(current) # {}
    /\ LET i == CHOOSE s \in FreeSlots(current) :
                    \A o \in FreeSlots(current) : s <= o
       IN /\ slots' = [slots EXCEPT ![current][i] = c]
          /\ slotOf' = [slotOf EXCEPT ![c] = i]
    /\ ctxState' = [ctxState EXCEPT ![c] = "live"]
    /\ UNCHANGED <<current, tableState, lock, growth, reader, rcuVars>>

(* kill_ioctx: the slot is cleared (RCU_INIT_POINTER) under the lock; the  *)
(* context is freed after a grace period of the table's flavor (the        *)
(* double bounce, which Lifecycle.tla models step by step).                *)
(* Swift: ContextTable.destroy, Context.reqsReleased.                      *)
Destroy(c) ==
    /\ ctxState[c] = "live"
    /\ lock = "none"
    /\ slots' = [slots EXCEPT ![current][slotOf[c]] = NoContext]
    /\ ctxState' = [ctxState EXCEPT ![c] = "dead"]
    /\ RCU!CallRcu(TableFlavor, <<"ctx", c>>)
    /\ UNCHANGED <<slotOf, current, tableState, lock, growth, reader>>

(* free_ioctx, after the grace period.  Swift: Context.free.               *)
FreeContext(c) ==
    /\ RCU!InvokeCallback(TableFlavor, <<"ctx", c>>)
    /\ ctxState' = [ctxState EXCEPT ![c] = "freed"]
    /\ UNCHANGED <<slotOf, tableVars, reader>>

-----------------------------------------------------------------------------
(* Growth: ioctx_add_table when every slot is taken and the bound allows.  *)
(* Swift: ContextTable.publish, GrowUnderTableLock.grow.                   *)

(* The larger table is allocated and the lock taken (the fixed code; the   *)
(* kernel allocates without the lock, then takes it and checks that the    *)
(* table is still the full one, which this single step folds in).  The     *)
(* buggy variant copies without the lock.  Swift: makeLargerTable,         *)
(* withTableLock, isCurrent.                                               *)
GrowStart ==
    /\ ~Growing
    /\ lock = "none"
    /\ FreeSlots(current) = {}
    /\ current < Len(Capacities)
    /\ growth' = [from |-> current, to |-> current + 1, next |-> 1]
    /\ lock' = IF Bug = "TableGrowthLosesSlot" THEN "none" ELSE "grow"
    /\ UNCHANGED <<ctxState, slotOf, current, tableState, slots, reader,
                   rcuVars>>

(* The copy of one slot into the new, unpublished table (the memcpy, slot  *)
(* by slot; RCU_INIT_POINTER suffices).  Swift: SlotTable.copySlots.       *)
CopySlot ==
    /\ Growing
    /\ growth.next \in Slots(growth.from)
    /\ slots' = [slots EXCEPT ![growth.to][growth.next] =
                                  slots[growth.from][growth.next]]
    /\ growth' = [growth EXCEPT !.next = @ + 1]
    /\ UNCHANGED <<ctxState, slotOf, current, tableState, lock, reader,
                   rcuVars>>

(* rcu_assign_pointer(mm->ioctx_table, table), kfree_rcu(old), unlock.     *)
(* The buggy copy takes the lock only here.  Swift: ContextTable.install,  *)
(* GrowUnderTableLock.scheduleFree (Flavor.call), SlotTable.free.          *)
GrowPublish ==
    /\ Growing
    /\ growth.next \notin Slots(growth.from)
    /\ lock = IF Bug = "TableGrowthLosesSlot" THEN "none" ELSE "grow"
    /\ current' = growth.to
    /\ IF Bug = "OldTableFreedWithoutGracePeriod"
       THEN /\ tableState' = [tableState EXCEPT ![growth.from] = "freed",
                                                ![growth.to] = "current"]
            /\ UNCHANGED rcuVars
       ELSE /\ tableState' = [tableState EXCEPT ![growth.from] = "retired",
                                                ![growth.to] = "current"]
            /\ RCU!CallRcu(TableFlavor, <<"table", growth.from>>)
    /\ lock' = "none"
    /\ growth' = NoGrowth
    /\ UNCHANGED <<ctxState, slotOf, slots, reader>>

(* The old table's kfree, after a grace period.  Swift: SlotTable.free.    *)
FreeTable(k) ==
    /\ RCU!InvokeCallback(TableFlavor, <<"table", k>>)
    /\ tableState' = [tableState EXCEPT ![k] = "freed"]
    /\ UNCHANGED <<ctxState, slotOf, current, slots, lock, growth, reader>>

-----------------------------------------------------------------------------
(* Lookups: lookup_ioctx.  Swift: ContextTable.lookup,                     *)
(* context(inSlot:in:), SlotTable.context(at:in:).                         *)

(* rcu_read_lock(), for a context whose ID the thread has (created), and   *)
(* table = rcu_dereference(mm->ioctx_table): the first dereference.  (One  *)
(* step: a grace period that starts between the two does not wait for the  *)
(* reader, which then loads the table the growth published before it.)     *)
LookupLoadTable(t, c) ==
    /\ reader[t] = Idle
    /\ ctxState[c] # "unused"
    /\ RCU!ReadLock(t, TableFlavor)
    /\ reader' = [reader EXCEPT ![t] = [Idle EXCEPT !.phase = "table",
                                                    !.ctx = c,
                                                    !.table = current]]
    /\ UNCHANGED <<ctxState, slotOf, tableVars>>

(* ctx = rcu_dereference(table->table[id]): the second, in the table      *)
(* loaded by the first (a freed table's slots are garbage: NoContext).     *)
LookupLoadSlot(t) ==
    /\ reader[t].phase = "table"
    /\ LET k == reader[t].table
           i == slotOf[reader[t].ctx]
       IN reader' = [reader EXCEPT ![t].phase = "slot", ![t].table = NoTable,
                        ![t].found = IF tableState[k] # "freed" /\ i \in Slots(k)
                                     THEN slots[k][i] ELSE NoContext]
    /\ UNCHANGED <<ctxState, slotOf, tableVars, rcuVars>>

(* percpu_ref_tryget_live, then rcu_read_unlock() (Lifecycle models the   *)
(* reference; here the lookup ends).                                       *)
LookupEnd(t) ==
    /\ reader[t].phase = "slot"
    /\ RCU!ReadUnlock(t, TableFlavor)
    /\ reader' = [reader EXCEPT ![t] = Idle]
    /\ UNCHANGED <<ctxState, slotOf, tableVars>>

-----------------------------------------------------------------------------
RcuStep ==
    \/ RCU!GpStart(TableFlavor) /\ UNCHANGED <<ctxState, slotOf, tableVars, reader>>
    \/ RCU!GpEnd(TableFlavor) /\ UNCHANGED <<ctxState, slotOf, tableVars, reader>>

Next ==
    \/ \E c \in Contexts : Create(c) \/ Destroy(c) \/ FreeContext(c)
    \/ GrowStart \/ CopySlot \/ GrowPublish
    \/ \E k \in TableIds : FreeTable(k)
    \/ \E t \in Threads :
          \/ \E c \in Contexts : LookupLoadTable(t, c)
          \/ LookupLoadSlot(t) \/ LookupEnd(t)
    \/ RcuStep

Spec == Init /\ [][Next]_vars

(* Grace periods, callbacks, growth and started lookups make progress;     *)
(* creates, destroys and new lookups need not happen.                      *)
Fairness ==
    /\ WF_vars(RcuStep)
    /\ \A c \in Contexts : WF_vars(FreeContext(c))
    /\ \A k \in TableIds : WF_vars(FreeTable(k))
    /\ WF_vars(CopySlot) /\ WF_vars(GrowPublish)
    /\ \A t \in Threads : WF_vars(LookupLoadSlot(t) \/ LookupEnd(t))

FairSpec == Spec /\ Fairness

-----------------------------------------------------------------------------
(* Safety.                                                                 *)

(* A reader that loaded the table pointer reads that table's slot next:   *)
(* the table must not have been freed (the kfree_rcu grace period).        *)
(* Refutes OldTableFreedWithoutGracePeriod.                                *)
NoReadOfFreedTable ==
    \A t \in Threads :
        reader[t].phase = "table" => tableState[reader[t].table] # "freed"

(* The table readers find holds exactly the live contexts, each in the     *)
(* slot of its ID: a lookup neither misses a live context nor finds a      *)
(* destroyed one (whose free would then come under it).  Refutes           *)
(* TableGrowthLosesSlot.                                                   *)
TableHoldsExactlyTheLiveContexts ==
    /\ \A c \in Contexts :
          ctxState[c] = "live" => slots[current][slotOf[c]] = c
    /\ \A i \in Slots(current) :
          slots[current][i] # NoContext => ctxState[slots[current][i]] = "live"

(* A context a lookup found is not freed while the lookup holds it.        *)
NoUseAfterFree ==
    \A t \in Threads :
        reader[t].phase = "slot" /\ reader[t].found # NoContext
            => ctxState[reader[t].found] # "freed"

(* Exactly one table is current; tables are used in order.                 *)
OneCurrentTable ==
    /\ tableState[current] = "current"
    /\ \A k \in TableIds :
          /\ k < current => tableState[k] \in {"retired", "freed"}
          /\ k > current => tableState[k] = "unused"

(* The growth writes only into the table it will publish.                  *)
GrowthCopiesIntoUnpublishedTable ==
    Growing => /\ growth.from = current
               /\ growth.to = current + 1
               /\ tableState[growth.to] = "unused"

-----------------------------------------------------------------------------
(* Liveness (under FairSpec).                                              *)

(* Every replaced table is freed: the grace period ends once the readers  *)
(* that loaded it leave, and the kfree_rcu callback runs.  (That destroyed *)
(* contexts are freed is Lifecycle's DestroyedEventuallyFreed.)            *)
ReplacedTablesEventuallyFreed ==
    \A k \in TableIds : tableState[k] = "retired" ~> tableState[k] = "freed"
=============================================================================
