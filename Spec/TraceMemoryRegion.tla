-------------------------- MODULE TraceMemoryRegion --------------------------
(***************************************************************************)
(* Trace validation of the Swift MemoryRegionTable: is a run, recorded     *)
(* step by step on real threads over a real liburcu flavor, a behaviour of *)
(* MemoryRegion?  The method is TraceLifecycle.tla's, and so are its       *)
(* arguments (read them there): each record carries the tickets b and e    *)
(* taken around its step, records are matched in any order their intervals *)
(* allow (TraceOrder.tla), grace periods are not recorded and TLC places   *)
(* them by the same two rules, and the spec's state after the last record  *)
(* must equal the implementation's final state, Final.                     *)
(*                                                                         *)
(* What differs:                                                           *)
(*  - The lookup's read lock and unlock are records of their own           *)
(*    (LookupReadLock, LookupReadUnlock); LookupLoad is MemoryRegion's     *)
(*    LoadSlot and LookupGet its PlainGet, without them.  As in            *)
(*    TraceLifecycle, a thread may already be inside a read section of its *)
(*    own (ReadSectionEnter/Exit, recorded by the tests' workload): the    *)
(*    lookup's section nests in it, and only the outermost counts.         *)
(*  - The deregistration's steps are recorded by the name its Order gives  *)
(*    them, each as the MemoryRegion action of that name, so a teardown    *)
(*    that takes them in another order is rejected at the first step out   *)
(*    of Order.  Its synchronize is recorded as SyncStart just before and  *)
(*    SyncEnd just after the real one, whose grace period lies between.    *)
(*  - Timeout is recorded around the wait that gave up (a release just     *)
(*    after it must not be ordered before it).                             *)
(*  - No QSBR: the tests' runs use the other flavors.                      *)
(***************************************************************************)
EXTENDS MemoryRegion, Sequences, TLC

CONSTANTS Trace, Final

(* nested: threads whose lookup runs inside a read section they were       *)
(* already in.                                                             *)
VARIABLES n, pending, gpMayStart, nested

traceVars == <<vars, n, pending, gpMayStart, nested>>

Matching == INSTANCE TraceOrder

InSection(t) == t \in rcuReaders[TableFlavor]

LookupReadLock(t) ==
    /\ reader[t] = Idle
    /\ IF InSection(t)
       THEN nested' = nested \cup {t} /\ RCU!Unchanged
       ELSE UNCHANGED nested /\ RCU!ReadLock(t, TableFlavor)
    /\ UNCHANGED <<regionVars, reader>>

LookupReadUnlock(t) ==
    /\ reader[t].phase # "loaded"
    /\ IF t \in nested
       THEN nested' = nested \ {t} /\ RCU!Unchanged
       ELSE UNCHANGED nested /\ RCU!ReadUnlock(t, TableFlavor)
    /\ UNCHANGED <<regionVars, reader>>

ReadSectionEnter(t) ==
    /\ RCU!ReadLock(t, TableFlavor)
    /\ UNCHANGED <<regionVars, reader, nested>>

ReadSectionExit(t) ==
    /\ RCU!ReadUnlock(t, TableFlavor)
    /\ UNCHANGED <<regionVars, reader, nested>>

(* A lookup for r's key that found its slot empty or holding another       *)
(* region: r is not published (a step that changes nothing).              *)
LookupMiss(t, r) ==
    /\ reader[t] = Idle /\ InSection(t)
    /\ ~published[r]
    /\ UNCHANGED vars

(* The MemoryRegion action a record names, with its parameters.            *)
IsStep(e) ==
    \/ e.a = "Register"          /\ Register(e.r, e.mode)
    \/ e.a = "LookupReadLock"    /\ LookupReadLock(e.t)
    \/ e.a = "LookupLoad"        /\ InSection(e.t) /\ LoadSlot(e.t, e.r)
                                 /\ RCU!Unchanged
    \/ e.a = "LookupMiss"        /\ LookupMiss(e.t, e.r)
    \/ e.a = "LookupGet"         /\ PlainGet(e.t, e.r) /\ RCU!Unchanged
    \/ e.a = "LookupReadUnlock"  /\ LookupReadUnlock(e.t)
    \/ e.a = "ReadSectionEnter"  /\ ReadSectionEnter(e.t)
    \/ e.a = "ReadSectionExit"   /\ ReadSectionExit(e.t)
    \/ e.a = "ReaderPut"         /\ ReaderPut(e.t, e.r)
    \/ e.a = "Adopt"             /\ Adopt(e.t, e.r)
    \/ e.a = "Claim"             /\ (Deregister(e.r) \/ Retry(e.r))
    \/ e.a = "Unpublish"         /\ Unpublish(e.r)
    \/ e.a = "DropDependents"    /\ DropDependents(e.r)
    \/ e.a = "SyncStart"         /\ SyncStart(e.r)
    \/ e.a = "SyncEnd"           /\ SyncEnd(e.r)
    \/ e.a = "PutTable"          /\ PutTable(e.r)
    \/ e.a = "Kill"              /\ Kill(e.r)
    \/ e.a = "IsZeroCheck"       /\ IsZeroCheck(e.r)
    \/ e.a = "Timeout"           /\ Timeout(e.r)
    \/ e.a = "WaitAndFree"       /\ WaitAndFree(e.r)
    \/ e.a = "RefSwitchConfirm"  /\ RefSwitchConfirm(e.r)
    \/ e.a = "Release"           /\ Release(e.r)

TraceInit ==
    Init /\ n = 1 /\ pending = {} /\ gpMayStart = FALSE /\ nested = {} /\ TLCSet(1, 0)

PassOver == Matching!PassOver /\ UNCHANGED <<vars, gpMayStart, nested>>

Recorded ==
    /\ \E i \in Matching!Candidates :
          /\ Matching!Ready(i)
          /\ IsStep(Trace[i])
          /\ Trace[i].a \in {"LookupReadLock", "LookupReadUnlock"}
             \/ UNCHANGED nested
          /\ Matching!Match(i)
    /\ gpMayStart' = Matching!LetsGracePeriodStart

StartGracePeriod ==
    /\ gpMayStart
    /\ \E f \in Flavors : GracePeriodStart(f)
    /\ gpMayStart' = FALSE
    /\ UNCHANGED <<n, pending, nested>>

EndGracePeriod ==
    /\ \E f \in Flavors : GracePeriodEnd(f)
    /\ gpMayStart' = TRUE
    /\ UNCHANGED <<n, pending, nested>>

TraceNext == IF Matching!GracePeriodEndDue THEN EndGracePeriod
                                           ELSE Recorded \/ PassOver \/ StartGracePeriod

(* The spec's state equals the implementation's final state.  step is the  *)
(* deregistration's own program counter, which the implementation does not *)
(* keep; the RCU variables are liburcu's.                                  *)
FinalFields == {"regionState", "published", "ref", "dependents", "cleaned",
                "released", "frees", "reader"}

SpecField(f) ==
    CASE f = "regionState" -> regionState [] f = "published" -> published
      [] f = "ref" -> ref                 [] f = "dependents" -> dependents
      [] f = "cleaned" -> cleaned         [] f = "released" -> released
      [] f = "frees" -> frees             [] f = "reader" -> reader

DifferingFields == {f \in FinalFields : SpecField(f) # Final[f]}

TraceAccepted == Matching!AllMatched /\ DifferingFields = {}

(* TraceNext, printing how far the matching got (for check-traces.sh).     *)
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

TraceIncomplete == ~TraceAccepted
=============================================================================
