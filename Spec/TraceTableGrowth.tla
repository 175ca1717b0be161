-------------------------- MODULE TraceTableGrowth --------------------------
(***************************************************************************)
(* Trace validation of the table's growth: is a run of the Swift           *)
(* ContextTable, whose table starts small and grows under concurrent       *)
(* lookups, recorded on real threads without anything ordering its steps,  *)
(* a behaviour of TableGrowth (fixed: Bug = "None")?                       *)
(*                                                                         *)
(* The recording is the one TraceLifecycle reads (same recorder, same      *)
(* tickets, same records); the tests keep only the records of steps that   *)
(* change or observe TableGrowth's variables, and TLC matches them the way *)
(* TraceLifecycle does (see its comment for why this order is sound): a    *)
(* record may take effect anywhere in its ticket interval, the grace       *)
(* periods are placed by TLC under the same two rules, and the final state *)
(* is compared.  TableGrowth abstracts the context's references: a         *)
(* destroy queues the context's free as an RCU callback at once, and the   *)
(* free's grace-period callback (FreeRcuCallback) is FreeContext; the real *)
(* call_rcu comes later (after the releases), so any grace period that     *)
(* covers it also covers the spec's.                                       *)
(*                                                                         *)
(* The records, projected onto TableGrowth's actions:                      *)
(*   CreatePublish(c, s)         Create(c), into slot s (checked: the first *)
(*                               free slot of the current table).          *)
(*   CreateFailsTableInsert(c)   an observation: the current table is the  *)
(*                               last and full.                            *)
(*   DestroyClaims(t, c)         Destroy(c).                               *)
(*   DestroyLost(t, c)           an observation: c is destroyed, not freed.*)
(*   FreeRcuCallback(c)          FreeContext(c).                           *)
(*   TableGrown(k)               GrowStart, every CopySlot and GrowPublish  *)
(*                               in one step (Grown): the code copies and  *)
(*                               publishes under one hold of the table     *)
(*                               lock, so no step that takes the lock comes *)
(*                               between, and no reader sees the copy      *)
(*                               before the publish.  The recorded step is *)
(*                               the publish; k, the new table's capacity, *)
(*                               names it (capacities grow strictly).      *)
(*   TableFreed(k)               FreeTable of the table of capacity k.     *)
(*   LookupReadLock(t), LookupLoadTable(t, k), LookupLoad(t, s, c) or      *)
(*   LookupMiss(t, s, c), LookupReadUnlock(t)                              *)
(*                               LookupLoadTable(t, c), LookupLoadSlot(t)   *)
(*                               and LookupEnd(t), with the read lock and  *)
(*                               unlock apart as in TraceLifecycle (and    *)
(*                               QSBR's and the caller's own sections);    *)
(*                               the table loaded must be the current one, *)
(*                               of capacity k, and the slot must hold c   *)
(*                               (0: nothing) in the table loaded.  The two *)
(*                               loads are one recorded step of the code,  *)
(*                               written as two records with its tickets:  *)
(*                               each load took effect inside them, table  *)
(*                               first, so a growth may come between.      *)
(*                                                                         *)
(* A run whose old table is freed without a grace period is rejected at    *)
(* TableFreed while a reader that was in its section at the growth has not *)
(* left; a copy that loses a concurrent unpublish at TableGrown (the table *)
(* it copied was not full), one that loses a publish at the next lookup of *)
(* the lost context (LookupMiss where the spec's table holds it) or at the *)
(* final state.                                                            *)
(*                                                                         *)
(* Final is the implementation's state after the run: contexts, the        *)
(* current table and its slots, which tables were freed; TraceIncomplete,  *)
(* checked as an invariant, is violated exactly when the trace is          *)
(* accepted (Spec/check-traces.sh reads TLC's verdict).                    *)
(***************************************************************************)
EXTENDS TableGrowth, Sequences, TLC

CONSTANTS Trace, Final, QSBR

VARIABLES n, pending, gpMayStart, nested

traceVars == <<vars, n, pending, gpMayStart, nested>>

(* The matching order and the grace-period rules TraceLifecycle and        *)
(* TraceMemoryRegion use; TableGrowth has one flavor, the table's.         *)
Matching == INSTANCE TraceOrder WITH Flavors <- {TableFlavor}

(* Contexts are the numbers 1..N in the records, 0 none: the generated    *)
(* configurations set Contexts to 1..N and NoContext to 0 (TLC compares no *)
(* number with TableGrowth's "none").                                      *)
ASSUME NoContext = 0

InSection(t) == t \in rcuReaders[TableFlavor]

-----------------------------------------------------------------------------
(* Read sections, as in TraceLifecycle: a lookup's section nests in one    *)
(* the thread is already in (its own, or QSBR's, which lasts until the     *)
(* thread reports a quiescent state), and only the outermost counts.       *)
LookupReadLock(t) ==
    /\ reader[t] = Idle
    /\ IF InSection(t)
       THEN nested' = nested \cup {t} /\ RCU!Unchanged
       ELSE UNCHANGED nested /\ RCU!ReadLock(t, TableFlavor)
    /\ UNCHANGED <<ctxState, slotOf, tableVars, reader>>

(* LookupEnd without its unlock, then the unlock if it is the outermost.   *)
LookupReadUnlock(t) ==
    /\ reader[t].phase = "slot"
    /\ reader' = [reader EXCEPT ![t] = Idle]
    /\ IF t \in nested
       THEN nested' = nested \ {t} /\ RCU!Unchanged
       ELSE /\ UNCHANGED nested
            /\ IF QSBR THEN RCU!Unchanged ELSE RCU!ReadUnlock(t, TableFlavor)
    /\ UNCHANGED <<ctxState, slotOf, tableVars>>

ReadSectionEnter(t) ==
    /\ RCU!ReadLock(t, TableFlavor)
    /\ UNCHANGED <<ctxState, slotOf, tableVars, reader, nested>>

ReadSectionExit(t) ==
    /\ RCU!ReadUnlock(t, TableFlavor)
    /\ UNCHANGED <<ctxState, slotOf, tableVars, reader, nested>>

QuiescentState(t) ==
    /\ QSBR
    /\ reader[t] = Idle
    /\ IF InSection(t) THEN RCU!ReadUnlock(t, TableFlavor) ELSE RCU!Unchanged
    /\ UNCHANGED <<ctxState, slotOf, tableVars, reader, nested>>

(* LookupLoadTable's dereference of the table pointer, inside the section: *)
(* the current table, of capacity k.  The lookup's ID is not recorded, so  *)
(* the reader's ctx stays NoContext; the slot comes with the next load.    *)
LoadTable(t, k) ==
    /\ reader[t] = Idle
    /\ InSection(t)
    /\ Capacities[current] = k
    /\ reader' = [reader EXCEPT ![t] = [Idle EXCEPT !.phase = "table",
                                                    !.table = current]]
    /\ UNCHANGED <<ctxState, slotOf, tableVars, rcuVars, nested>>

(* LookupLoadSlot: slot s (from 0) of the table loaded held c.  The table  *)
(* must not have been freed (NoReadOfFreedTable: the code would stop on    *)
(* its poison), and a slot beyond it holds nothing.                        *)
LoadSlot(t, s, c) ==
    /\ reader[t].phase = "table"
    /\ LET k == reader[t].table
           found == IF s + 1 \in Slots(k) THEN slots[k][s + 1] ELSE NoContext
       IN /\ tableState[k] # "freed"
          /\ found = c
          /\ reader' = [reader EXCEPT ![t].phase = "slot", ![t].table = NoTable,
                                      ![t].found = found]
    /\ UNCHANGED <<ctxState, slotOf, tableVars, rcuVars, nested>>

-----------------------------------------------------------------------------
(* GrowStart, CopySlot for every slot of the full table, GrowPublish, as   *)
(* one step (the fixed code: under one hold of the table lock).  The new   *)
(* table's slots beyond the old ones are empty, as CopySlot leaves them.   *)
Grown(k) ==
    /\ ~Growing
    /\ lock = "none"
    /\ FreeSlots(current) = {}
    /\ current < Len(Capacities)
    /\ Capacities[current + 1] = k
    /\ current' = current + 1
    /\ slots' = [slots EXCEPT ![current + 1] =
                    [i \in AllSlots |-> IF i \in Slots(current)
                                        THEN slots[current][i] ELSE NoContext]]
    /\ tableState' = [tableState EXCEPT ![current] = "retired",
                                        ![current + 1] = "current"]
    /\ RCU!CallRcu(TableFlavor, <<"table", current>>)
    /\ UNCHANGED <<ctxState, slotOf, lock, growth, reader>>

TableFreed(k) ==
    \E i \in TableIds : Capacities[i] = k /\ FreeTable(i)

(* Observations, checked against the state they saw.                       *)
CreateFailsTableInsert(c) ==
    /\ ctxState[c] = "unused"
    /\ lock = "none"
    /\ FreeSlots(current) = {}
    /\ current = Len(Capacities)
    /\ UNCHANGED vars

DestroyLost(c) ==
    /\ ctxState[c] = "dead"
    /\ UNCHANGED vars

-----------------------------------------------------------------------------
IsStep(e) ==
    \/ e.a = "CreatePublish"          /\ Create(e.c) /\ slotOf'[e.c] = e.s + 1
                                      /\ UNCHANGED nested
    \/ e.a = "CreateFailsTableInsert" /\ CreateFailsTableInsert(e.c)
                                      /\ UNCHANGED nested
    \/ e.a = "DestroyClaims"          /\ Destroy(e.c) /\ UNCHANGED nested
    \/ e.a = "DestroyLost"            /\ DestroyLost(e.c) /\ UNCHANGED nested
    \/ e.a = "FreeRcuCallback"        /\ FreeContext(e.c) /\ UNCHANGED nested
    \/ e.a = "TableGrown"             /\ Grown(e.k) /\ UNCHANGED nested
    \/ e.a = "TableFreed"             /\ TableFreed(e.k) /\ UNCHANGED nested
    \/ e.a = "LookupReadLock"         /\ LookupReadLock(e.t)
    \/ e.a = "LookupLoadTable"        /\ LoadTable(e.t, e.k)
    \/ e.a \in {"LookupLoad", "LookupMiss"} /\ LoadSlot(e.t, e.s, e.c)
    \/ e.a = "LookupReadUnlock"       /\ LookupReadUnlock(e.t)
    \/ e.a = "QuiescentState"         /\ QuiescentState(e.t)
    \/ e.a = "ReadSectionEnter"       /\ ReadSectionEnter(e.t)
    \/ e.a = "ReadSectionExit"        /\ ReadSectionExit(e.t)

-----------------------------------------------------------------------------
TraceInit ==
    Init /\ n = 1 /\ pending = {} /\ gpMayStart = FALSE /\ nested = {} /\ TLCSet(1, 0)

PassOver == Matching!PassOver /\ UNCHANGED <<vars, gpMayStart, nested>>

(* Grace periods, placed by TLC under TraceLifecycle's two rules: one ends *)
(* as soon as it may; one starts only right after a step that queued a     *)
(* callback or let a reader go, or right after the previous one ended.     *)
Recorded ==
    /\ \E i \in Matching!Candidates : Matching!Ready(i) /\ IsStep(Trace[i]) /\ Matching!Match(i)
    /\ gpMayStart' = Matching!LetsGracePeriodStart

StartGracePeriod ==
    /\ gpMayStart
    /\ RCU!GpStart(TableFlavor)
    /\ gpMayStart' = FALSE
    /\ UNCHANGED <<ctxState, slotOf, tableVars, reader, n, pending, nested>>

EndGracePeriod ==
    /\ RCU!GpEnd(TableFlavor)
    /\ gpMayStart' = TRUE
    /\ UNCHANGED <<ctxState, slotOf, tableVars, reader, n, pending, nested>>

TraceNext == IF Matching!GracePeriodEndDue THEN EndGracePeriod
                                  ELSE Recorded \/ PassOver \/ StartGracePeriod

-----------------------------------------------------------------------------
(* The spec's state against the implementation's at the end: the contexts, *)
(* the current table (its index), the contexts in its slots, the tables'   *)
(* states, the readers (idle).  A Final with fewer fields compares fewer   *)
(* (none: a run stopped in the middle).                                    *)
SpecField(f) ==
    CASE f = "ctxState" -> ctxState
      [] f = "current" -> current
      [] f = "slots" -> [i \in Slots(current) |-> slots[current][i]]
      [] f = "tableState" -> tableState
      [] f = "reader" -> reader

DifferingFields == {f \in DOMAIN Final : SpecField(f) # Final[f]}

TraceAccepted == Matching!AllMatched /\ DifferingFields = {}

DiagnosedTraceNext ==
    IF Matching!GracePeriodEndDue
    THEN EndGracePeriod
    ELSE \/ /\ Recorded
            /\ IF Matching!FirstUnmatched' - 1 > TLCGet(1)
               THEN /\ TLCSet(1, Matching!FirstUnmatched' - 1)
                    /\ PrintT(<<"matched through event", Matching!FirstUnmatched' - 1>>)
               ELSE TRUE
            /\ IF Matching!AllMatched'
               THEN PrintT(<<"final state differs in", DifferingFields'>>)
               ELSE TRUE
         \/ PassOver
         \/ StartGracePeriod

TraceSpec == TraceInit /\ [][TraceNext]_traceVars

TraceIncomplete == ~TraceAccepted
=============================================================================
