----------------------------- MODULE TraceOrder -----------------------------
(***************************************************************************)
(* What trace validation does the same way for every spec: the order in    *)
(* which recorded events may be matched, and where TLC may place the grace *)
(* periods, which are not recorded.  TraceLifecycle.tla explains both      *)
(* ("Order", "Grace periods"); TraceLifecycle and TraceMemoryRegion        *)
(* instantiate this module with their own Trace and variables.             *)
(*                                                                         *)
(* Trace is a sequence of records with tickets b and e (the step took      *)
(* effect between them); n is the next record in recording order, pending  *)
(* the records before n not matched yet (passed over for records that      *)
(* overlap them).                                                          *)
(***************************************************************************)
EXTENDS Naturals, Sequences

CONSTANTS Trace, Flavors
VARIABLES n, pending, rcuReaders, rcuGp, rcuCallbacks

(* Record i may be matched now: no record whose interval ended before i's  *)
(* began is still pending (all of them come before i in recording order,   *)
(* so the others are matched).                                             *)
Ready(i) == \A j \in pending : ~(Trace[j].e < Trace[i].b)

(* The records that may be matched next: a pending one, or record n.       *)
Candidates == pending \cup (IF n <= Len(Trace) THEN {n} ELSE {})

Match(i) ==
    IF i = n THEN n' = n + 1 /\ UNCHANGED pending
             ELSE pending' = pending \ {i} /\ UNCHANGED n

(* Record n is passed over, to be matched after records that overlap it:   *)
(* only when the next one does.  (The caller leaves its other variables    *)
(* unchanged.)                                                             *)
PassOver ==
    /\ n < Len(Trace)
    /\ Trace[n + 1].b < Trace[n].e
    /\ n' = n + 1
    /\ pending' = pending \cup {n}

(* Every record is matched.                                                *)
AllMatched == n > Len(Trace) /\ pending = {}

(* The first record not matched: the trace is a behaviour up to it.        *)
FirstUnmatched == IF pending = {} THEN n
                  ELSE CHOOSE i \in pending : \A j \in pending : i <= j

(* The step just taken let a grace period start: it let a reader go or     *)
(* queued a callback (TraceLifecycle.tla, "Grace periods").                *)
LetsGracePeriodStart ==
    \E f \in Flavors :
        \/ rcuReaders'[f] \subseteq rcuReaders[f] /\ rcuReaders'[f] # rcuReaders[f]
        \/ ~(rcuCallbacks'[f].queued \subseteq rcuCallbacks[f].queued)

(* A grace period may end, and so ends now.                                *)
GracePeriodEndDue == \E f \in Flavors : rcuGp[f].active /\ rcuGp[f].waitFor = {}
=============================================================================
