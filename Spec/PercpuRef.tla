------------------------------ MODULE PercpuRef ------------------------------
(***************************************************************************)
(* The kernel's percpu_ref (lib/percpu-refcount.c) with its real           *)
(* representation: per-CPU counters, an atomic count carrying a large      *)
(* bias while the per-CPU counters are in use, the __PERCPU_REF_ATOMIC and *)
(* __PERCPU_REF_DEAD flags, and the switch to atomic mode that sums the    *)
(* per-CPU counters in an RCU callback of the reference's own flavor       *)
(* (sched-RCU in the kernel; the Flavor parameter of PercpuRef<Flavor> in  *)
(* Swift).  One reference, shared by Threads running on CPUs.              *)
(*                                                                         *)
(* A get or put in percpu mode takes two steps, as in the kernel: read the *)
(* flags inside a read section of the reference's flavor, then add to the  *)
(* counter of the CPU the thread runs on and leave the section.  The       *)
(* switch to atomic mode relies on exactly this: after a grace period no   *)
(* thread can still be between the two steps, so the sum is final.  In     *)
(* atomic mode the flag read and the atomic operation take one step.       *)
(*                                                                         *)
(* Bug selects a broken variant for TLC to refute:                         *)
(*   "SumBeforeGracePeriod"   the per-CPU counters are summed when the     *)
(*                            switch starts, not after the grace period;   *)
(*   "BiasDroppedBeforeSum"   the bias leaves the atomic count when the    *)
(*                            switch starts, the sum only comes after the  *)
(*                            grace period.                                *)
(*                                                                         *)
(* Proofs/PercpuRefRefinement.tla checks that (with Bug = "None") this     *)
(* representation refines the single count of RefCount.tla.                *)
(***************************************************************************)
EXTENDS Integers, FiniteSets

CONSTANTS
    Threads,    \* threads using the reference
    CPUs,       \* CPUs the threads may run on (and migrate between)
    MaxHeld,    \* references one thread may hold at once
    RefFlavor,  \* RCU flavor of the reference's internal grace periods
    Bug

Bugs == {"None", "SumBeforeGracePeriod", "BiasDroppedBeforeSum"}

ASSUME /\ Bug \in Bugs
       /\ MaxHeld \in Nat \ {0}
       /\ CPUs # {}

VARIABLES
    ref,        \* the reference, see RefType
    held,       \* held[t]: references thread t holds
    initialRef, \* the reference percpu_ref_init() returned is still held
    pending,    \* pending[t]: "inc"/"dec" when t has seen percpu mode and
                \* not yet touched its CPU's counter; "none" otherwise
    rcuReaders, rcuGp, rcuCallbacks

rcuVars == <<rcuReaders, rcuGp, rcuCallbacks>>
vars == <<ref, held, initialRef, pending, rcuVars>>

SwitchCallback == "switch"   \* ref->data->rcu, the switch's rcu_head

RCU == INSTANCE RCU WITH Flavors <- {RefFlavor}, Callbacks <- {SwitchCallback}

RECURSIVE SumOver(_, _)
SumOver(f, S) ==
    IF S = {} THEN 0
    ELSE LET x == CHOOSE y \in S : TRUE IN f[x] + SumOver(f, S \ {x})

PercpuSum == SumOver(ref.pcpu, CPUs)

ZeroCounters == [c \in CPUs |-> 0]

(* Fields of ref:                                                          *)
(*   atomicFlag  __PERCPU_REF_ATOMIC: gets and puts use the atomic count   *)
(*   dead        __PERCPU_REF_DEAD                                         *)
(*   forceAtomic ref->force_atomic                                         *)
(*   switching   ref->confirm_switch != NULL: a switch waits for its       *)
(*               grace period; it holds one reference of its own           *)
(*   count       the atomic count without the bias                         *)
(*   biased      the atomic count includes PERCPU_COUNT_BIAS, so it cannot *)
(*               reach zero                                                *)
(*   pcpu        the per-CPU counters (each may be negative)               *)
(*   releases    times the release callback was called                     *)
RefType ==
    [atomicFlag: BOOLEAN, dead: BOOLEAN, forceAtomic: BOOLEAN,
     switching: BOOLEAN, count: Int, biased: BOOLEAN,
     pcpu: [CPUs -> Int], releases: Nat]

TypeOK ==
    /\ ref \in RefType
    /\ held \in [Threads -> 0..MaxHeld]
    /\ initialRef \in BOOLEAN
    /\ pending \in [Threads -> {"none", "inc", "dec"}]
    /\ RCU!TypeOK

(* percpu_ref_init(ref, release, 0, gfp): percpu mode, one reference in    *)
(* the atomic count, plus the bias.  Swift: PercpuRef.init(release:).      *)
Init ==
    /\ ref = [atomicFlag |-> FALSE, dead |-> FALSE, forceAtomic |-> FALSE,
              switching |-> FALSE, count |-> 1, biased |-> TRUE,
              pcpu |-> ZeroCounters, releases |-> 0]
    /\ held = [t \in Threads |-> 0]
    /\ initialRef = TRUE
    /\ pending = [t \in Threads |-> "none"]
    /\ RCU!Init

(* The atomic count after adding d; the release callback is due when it    *)
(* reaches zero (atomic_long_dec_and_test in percpu_ref_put_many).         *)
AtomicAdd(r, d) ==
    [r EXCEPT !.count = @ + d,
              !.releases = IF d < 0 /\ ~r.biased /\ r.count + d = 0
                           THEN @ + 1 ELSE @]

(* __percpu_ref_switch_to_atomic() from percpu mode: set the flag, take a  *)
(* reference for the switch (on the atomic count, as the flag is set) and  *)
(* queue percpu_ref_switch_to_atomic_rcu with call_rcu of the flavor.      *)
SwitchStarted(r) ==
    LET flagged == [r EXCEPT !.atomicFlag = TRUE, !.switching = TRUE,
                             !.count = @ + 1]
    IN CASE Bug = "SumBeforeGracePeriod" ->
              [flagged EXCEPT !.count = @ + PercpuSum, !.biased = FALSE,
                              !.pcpu = ZeroCounters]
         [] Bug = "BiasDroppedBeforeSum" ->
              [flagged EXCEPT !.biased = FALSE]
         [] OTHER -> flagged

(* percpu_ref_switch_to_atomic_rcu(): add the per-CPU sum and remove the   *)
(* bias in one atomic_long_add, then drop the switch's reference.  (The    *)
(* kernel zeroes the per-CPU counters only when switching back; they are   *)
(* never read in atomic mode, so the model zeroes them here.)              *)
SwitchFinished(r) ==
    LET summed == [r EXCEPT !.count = IF Bug = "SumBeforeGracePeriod"
                                      THEN @ ELSE @ + PercpuSum,
                            !.biased = FALSE, !.switching = FALSE,
                            !.pcpu = ZeroCounters]
    IN AtomicAdd(summed, -1)

(* __percpu_ref_switch_to_percpu(): zero the per-CPU counters, add the     *)
(* bias back, clear the flag.  No grace period is needed.                  *)
SwitchedToPercpu(r) ==
    [r EXCEPT !.atomicFlag = FALSE, !.biased = TRUE, !.pcpu = ZeroCounters]

-----------------------------------------------------------------------------
(* Operations of a thread t.                                               *)

(* percpu_ref_get / percpu_ref_tryget / percpu_ref_tryget_live, percpu     *)
(* path, first step: rcu_read_lock_sched() and __ref_is_percpu() sees the  *)
(* flag clear.  All three will succeed; percpu_ref_get requires the caller *)
(* to hold a reference already.  Swift: PercpuRef.get/tryGet/tryGetLive.   *)
AcquireSeesPercpu(t, op) ==
    /\ pending[t] = "none"
    /\ held[t] < MaxHeld
    /\ op = "get" => held[t] > 0 \/ initialRef
    /\ ~ref.atomicFlag
    /\ RCU!ReadLock(t, RefFlavor)
    /\ pending' = [pending EXCEPT ![t] = "inc"]
    /\ held' = [held EXCEPT ![t] = @ + 1]
    /\ UNCHANGED <<ref, initialRef>>

(* percpu_ref_put, percpu path, first step.  Swift: PercpuRef.put().       *)
PutSeesPercpu(t) ==
    /\ pending[t] = "none"
    /\ held[t] > 0
    /\ ~ref.atomicFlag
    /\ RCU!ReadLock(t, RefFlavor)
    /\ pending' = [pending EXCEPT ![t] = "dec"]
    /\ held' = [held EXCEPT ![t] = @ - 1]
    /\ UNCHANGED <<ref, initialRef>>

(* Second step: this_cpu_inc/dec on the CPU the thread now runs on, then   *)
(* rcu_read_unlock_sched().                                                *)
PercpuOpDone(t, cpu) ==
    /\ pending[t] # "none"
    /\ ref' = [ref EXCEPT !.pcpu[cpu] = @ + (IF pending[t] = "inc"
                                             THEN 1 ELSE -1)]
    /\ pending' = [pending EXCEPT ![t] = "none"]
    /\ RCU!ReadUnlock(t, RefFlavor)
    /\ UNCHANGED <<held, initialRef>>

(* percpu_ref_get, atomic path: atomic_long_inc.                           *)
GetAtomic(t) ==
    /\ pending[t] = "none"
    /\ held[t] < MaxHeld
    /\ held[t] > 0 \/ initialRef
    /\ ref.atomicFlag
    /\ ref' = AtomicAdd(ref, 1)
    /\ held' = [held EXCEPT ![t] = @ + 1]
    /\ UNCHANGED <<initialRef, pending, rcuVars>>

(* percpu_ref_tryget (op = "tryget") and percpu_ref_tryget_live, atomic    *)
(* path: atomic_long_inc_not_zero, and for tryget_live only if not dead.   *)
(* A failed attempt changes nothing and is a stuttering step.              *)
TryAcquireAtomic(t, op) ==
    /\ pending[t] = "none"
    /\ held[t] < MaxHeld
    /\ ref.atomicFlag
    /\ op = "tryget_live" => ~ref.dead
    /\ ref.biased \/ ref.count # 0
    /\ ref' = AtomicAdd(ref, 1)
    /\ held' = [held EXCEPT ![t] = @ + 1]
    /\ UNCHANGED <<initialRef, pending, rcuVars>>

(* percpu_ref_put, atomic path: atomic_long_dec_and_test, release at 0.    *)
PutAtomic(t) ==
    /\ pending[t] = "none"
    /\ held[t] > 0
    /\ ref.atomicFlag
    /\ ref' = AtomicAdd(ref, -1)
    /\ held' = [held EXCEPT ![t] = @ - 1]
    /\ UNCHANGED <<initialRef, pending, rcuVars>>

-----------------------------------------------------------------------------
(* Operations on the reference as a whole.  They take                      *)
(* percpu_ref_switch_lock and wait until no switch is in flight.           *)

(* percpu_ref_kill(): set DEAD, switch to atomic, put the initial          *)
(* reference.  Swift: PercpuRef.kill(), kill(confirm:) (the confirmation   *)
(* runs in SwitchConfirm).                                                 *)
Kill ==
    /\ initialRef
    /\ ~ref.dead
    /\ ~ref.switching
    /\ LET marked == [ref EXCEPT !.dead = TRUE, !.atomicFlag = TRUE]
           switched == IF ref.atomicFlag THEN marked ELSE SwitchStarted(marked)
       IN ref' = AtomicAdd(switched, -1)
    /\ IF ref.atomicFlag THEN RCU!Unchanged
       ELSE RCU!CallRcu(RefFlavor, SwitchCallback)
    /\ initialRef' = FALSE
    /\ UNCHANGED <<held, pending>>

(* percpu_ref_switch_to_atomic().  Swift: PercpuRef.switchToAtomic().      *)
SwitchToAtomic ==
    /\ ~ref.switching
    /\ ~ref.forceAtomic
    /\ ref' = IF ref.atomicFlag THEN [ref EXCEPT !.forceAtomic = TRUE]
              ELSE SwitchStarted([ref EXCEPT !.forceAtomic = TRUE])
    /\ IF ref.atomicFlag THEN RCU!Unchanged
       ELSE RCU!CallRcu(RefFlavor, SwitchCallback)
    /\ UNCHANGED <<held, initialRef, pending>>

(* percpu_ref_switch_to_percpu(): back to percpu mode unless dead.         *)
(* Swift: PercpuRef.switchToPercpu().                                      *)
SwitchToPercpu ==
    /\ ~ref.switching
    /\ ref.forceAtomic \/ (ref.atomicFlag /\ ~ref.dead)
    /\ LET unforced == [ref EXCEPT !.forceAtomic = FALSE]
       IN ref' = IF ref.atomicFlag /\ ~ref.dead
                 THEN SwitchedToPercpu(unforced) ELSE unforced
    /\ UNCHANGED <<held, initialRef, pending, rcuVars>>

(* The switch's RCU callback runs after the grace period:                  *)
(* percpu_ref_switch_to_atomic_rcu + percpu_ref_call_confirm_rcu.          *)
SwitchConfirm ==
    /\ RCU!InvokeCallback(RefFlavor, SwitchCallback)
    /\ ref' = SwitchFinished(ref)
    /\ UNCHANGED <<held, initialRef, pending>>

(* percpu_ref_resurrect(): a dead reference that was not released gets a   *)
(* new initial reference and goes back to percpu mode.  The model runs it  *)
(* once no switch is in flight.  Swift: PercpuRef.resurrect().             *)
Resurrect ==
    /\ ref.dead
    /\ ref.releases = 0
    /\ ~ref.switching
    /\ LET revived == [ref EXCEPT !.dead = FALSE, !.count = @ + 1]
       IN ref' = IF ref.forceAtomic THEN revived ELSE SwitchedToPercpu(revived)
    /\ initialRef' = TRUE
    /\ UNCHANGED <<held, pending, rcuVars>>

(* percpu_ref_reinit(): only once percpu_ref_is_zero(); starts a new life  *)
(* (its release may be due again).  Swift: PercpuRef.reinit().             *)
Reinit ==
    /\ ref.dead
    /\ ref.atomicFlag /\ ~ref.switching /\ ~ref.biased /\ ref.count = 0
    /\ LET revived == [ref EXCEPT !.dead = FALSE, !.count = 1, !.releases = 0]
       IN ref' = IF ref.forceAtomic THEN revived ELSE SwitchedToPercpu(revived)
    /\ initialRef' = TRUE
    /\ UNCHANGED <<held, pending, rcuVars>>

GracePeriodStart == RCU!GpStart(RefFlavor) /\ UNCHANGED <<ref, held, initialRef, pending>>
GracePeriodEnd == RCU!GpEnd(RefFlavor) /\ UNCHANGED <<ref, held, initialRef, pending>>

Next ==
    \/ \E t \in Threads :
          \/ \E op \in {"get", "tryget", "tryget_live"} : AcquireSeesPercpu(t, op)
          \/ PutSeesPercpu(t)
          \/ \E cpu \in CPUs : PercpuOpDone(t, cpu)
          \/ GetAtomic(t)
          \/ \E op \in {"tryget", "tryget_live"} : TryAcquireAtomic(t, op)
          \/ PutAtomic(t)
    \/ Kill \/ SwitchToAtomic \/ SwitchToPercpu \/ SwitchConfirm
    \/ Resurrect \/ Reinit
    \/ GracePeriodStart \/ GracePeriodEnd

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(* Properties.                                                             *)

(* The release callback never runs while someone still holds a reference.  *)
NoReleaseWhileHeld ==
    ref.releases > 0 => (\A t \in Threads : held[t] = 0) /\ ~initialRef

(* The release callback runs at most once per life of the reference.       *)
ReleasedAtMostOnce == ref.releases <= 1

(* At most one switch is in flight, and it is the one queued callback.     *)
OneSwitchInFlight == ref.switching <=> SwitchCallback \in RCU!Pending(RefFlavor)

(* The bias stays in the atomic count until the switch has summed.         *)
BiasedUntilSummed == ref.biased <=> (~ref.atomicFlag \/ ref.switching)
=============================================================================
