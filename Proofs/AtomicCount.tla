----------------------------- MODULE AtomicCount -----------------------------
(***************************************************************************)
(* The specification percpu_ref must meet: a plain reference count with    *)
(* the operations of RefCount.tla, each one atomic step, used by Threads   *)
(* that each hold up to MaxHeld references, plus the initial reference     *)
(* that kill() drops.  The mode is visible only through what the           *)
(* operations return and when the release becomes due; no grace periods.   *)
(* PercpuRefRefinement.tla checks that PercpuRef.tla implements it.        *)
(***************************************************************************)
EXTENDS RefCount, FiniteSets

CONSTANTS Threads, MaxHeld

VARIABLES ref, held, initialRef

vars == <<ref, held, initialRef>>

TypeOK ==
    /\ ref \in RefRecords
    /\ held \in [Threads -> 0..MaxHeld]
    /\ initialRef \in BOOLEAN

Init ==
    /\ ref = NewRef("percpu")
    /\ held = [t \in Threads |-> 0]
    /\ initialRef = TRUE

Take(t) ==
    /\ held[t] < MaxHeld
    /\ ref' = Got(ref)
    /\ held' = [held EXCEPT ![t] = @ + 1]
    /\ UNCHANGED initialRef

GetRef(t) == (held[t] > 0 \/ initialRef) /\ Take(t)
TryGetRef(t) == CanTryGet(ref) /\ Take(t)
TryGetLiveRef(t) == CanTryGetLive(ref) /\ Take(t)

PutRef(t) ==
    /\ held[t] > 0
    /\ ref' = Put(ref)
    /\ held' = [held EXCEPT ![t] = @ - 1]
    /\ UNCHANGED initialRef

Kill ==
    /\ initialRef /\ ~ref.dead /\ ref.mode # "switching"
    /\ ref' = Killed(ref)
    /\ initialRef' = FALSE
    /\ UNCHANGED held

ConfirmSwitch ==
    /\ ref.mode = "switching"
    /\ ref' = Confirmed(ref)
    /\ UNCHANGED <<held, initialRef>>

SwitchToAtomic ==
    /\ ref.mode # "switching" /\ ~ref.forceAtomic
    /\ ref' = ForcedAtomic(ref)
    /\ UNCHANGED <<held, initialRef>>

SwitchToPercpu ==
    /\ ref.mode # "switching"
    /\ ref.forceAtomic \/ (ref.mode = "atomic" /\ ~ref.dead)
    /\ ref' = BackToPercpu(ref)
    /\ UNCHANGED <<held, initialRef>>

Resurrect ==
    /\ ref.dead /\ ref.releases = 0 /\ ref.mode # "switching"
    /\ ref' = Resurrected(ref)
    /\ initialRef' = TRUE
    /\ UNCHANGED held

Reinit ==
    /\ ref.dead /\ IsZero(ref)
    /\ ref' = Reinitialized(ref)
    /\ initialRef' = TRUE
    /\ UNCHANGED held

Next ==
    \/ \E t \in Threads : GetRef(t) \/ TryGetRef(t) \/ TryGetLiveRef(t)
                          \/ PutRef(t)
    \/ Kill \/ ConfirmSwitch \/ SwitchToAtomic \/ SwitchToPercpu
    \/ Resurrect \/ Reinit

Spec == Init /\ [][Next]_vars

RECURSIVE SumHeld(_)
SumHeld(S) ==
    IF S = {} THEN 0
    ELSE LET t == CHOOSE x \in S : TRUE IN held[t] + SumHeld(S \ {t})

(* The count is exactly the references held.                               *)
CountIsHeldReferences ==
    ref.count = SumHeld(Threads) + (IF initialRef THEN 1 ELSE 0)

(* The release becomes due once, when the last reference is gone.          *)
ReleaseOnlyWhenUnheld ==
    /\ ref.releases <= 1
    /\ ref.releases = 1 => ref.count = 0
=============================================================================
