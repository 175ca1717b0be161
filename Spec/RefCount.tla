------------------------------ MODULE RefCount ------------------------------
(***************************************************************************)
(* percpu_ref as its callers see it: one reference count plus the mode and *)
(* dead flags.  This is the abstraction that PercpuRef.tla's per-CPU       *)
(* representation refines (Proofs/PercpuRefRefinement.tla), and the one    *)
(* Lifecycle.tla uses for the users and reqs references of a context.      *)
(*                                                                         *)
(* The module has no variables: it defines the reference record and the    *)
(* effect of each operation on it, so that several references can live     *)
(* in one client's state.  A client decides when an operation runs and     *)
(* pairs a mode switch with a grace period of the reference's flavor.      *)
(*                                                                         *)
(* Fields:                                                                 *)
(*   count       references held (the kernel's percpu counters + atomic    *)
(*               count, less the bias and the switch's own reference)      *)
(*   mode        "percpu": gets and puts go to per-CPU counters;           *)
(*               "switching": switch to atomic in flight, waiting for a    *)
(*               grace period (the kernel's confirm_switch != NULL);       *)
(*               "atomic": the atomic count is exact                       *)
(*   dead        __PERCPU_REF_DEAD, set by percpu_ref_kill()               *)
(*   forceAtomic percpu_ref_switch_to_atomic() (ref->force_atomic)         *)
(*   releases    how many times the release callback has been due; more    *)
(*               than one is a double release                              *)
(***************************************************************************)
EXTENDS Integers

Modes == {"percpu", "switching", "atomic"}

RefRecords ==
    [count: Int, mode: Modes, dead: BOOLEAN, forceAtomic: BOOLEAN,
     releases: Nat]

(* percpu_ref_init(ref, release, flags): one reference, held by the        *)
(* creator.  PERCPU_REF_INIT_ATOMIC starts (and keeps) it in atomic mode.  *)
(* Swift: PercpuRef.init(options: .startAtomic, release:).                 *)
NewRef(initMode) ==
    [count |-> 1, mode |-> initMode, dead |-> FALSE,
     forceAtomic |-> initMode = "atomic", releases |-> 0]

(* percpu_ref_get(): no check at all; the caller must already hold a       *)
(* reference.  Swift: PercpuRef.get().                                     *)
Got(r) == [r EXCEPT !.count = @ + 1]

(* percpu_ref_tryget(): succeeds unless the count is zero; while a switch  *)
(* is in flight the bias keeps the atomic count non-zero.                  *)
(* Swift: PercpuRef.tryGet().                                              *)
CanTryGet(r) == r.mode # "atomic" \/ r.count > 0

(* percpu_ref_tryget_live(): also fails once the reference is dead.        *)
(* In percpu mode it cannot see the dead flag and succeeds.                *)
(* Swift: PercpuRef.tryGetLive().                                          *)
CanTryGetLive(r) ==
    \/ r.mode = "percpu"
    \/ ~r.dead /\ (r.mode = "switching" \/ r.count > 0)

(* percpu_ref_put(): the release callback is due when the count reaches    *)
(* zero in atomic mode.  Swift: PercpuRef.put().                           *)
Put(r) ==
    [r EXCEPT !.count = @ - 1,
              !.releases = IF r.mode = "atomic" /\ r.count = 1
                           THEN @ + 1 ELSE @]

(* Whether switching this reference to atomic mode needs a grace period.   *)
SwitchNeedsGracePeriod(r) == r.mode = "percpu"

(* __percpu_ref_switch_to_atomic(): in percpu mode, start a switch that    *)
(* completes after a grace period; in atomic mode, nothing to do.          *)
StartSwitch(r) ==
    [r EXCEPT !.mode = IF @ = "percpu" THEN "switching" ELSE @]

(* percpu_ref_kill(): mark dead, switch to atomic, drop the initial        *)
(* reference.  Waits for a switch in flight first (callers check           *)
(* mode # "switching").  Swift: PercpuRef.kill(), kill(confirm:).          *)
Killed(r) == Put(StartSwitch([r EXCEPT !.dead = TRUE]))

(* percpu_ref_switch_to_atomic_rcu(): the grace period has ended, the      *)
(* count is exact; if it is zero the release callback is due now.          *)
Confirmed(r) ==
    [r EXCEPT !.mode = "atomic",
              !.releases = IF r.count = 0 THEN @ + 1 ELSE @]

(* percpu_ref_switch_to_atomic().  Swift: PercpuRef.switchToAtomic().      *)
ForcedAtomic(r) == StartSwitch([r EXCEPT !.forceAtomic = TRUE])

(* percpu_ref_switch_to_percpu(): back to percpu unless dead.  Waits for   *)
(* a switch in flight first.  Swift: PercpuRef.switchToPercpu().           *)
BackToPercpu(r) ==
    [r EXCEPT !.forceAtomic = FALSE,
              !.mode = IF r.dead THEN @ ELSE "percpu"]

(* percpu_ref_resurrect(): a dead, not yet released reference becomes      *)
(* live again with one more reference (the new initial one).               *)
(* Swift: PercpuRef.resurrect().                                           *)
Resurrected(r) ==
    [r EXCEPT !.dead = FALSE, !.count = @ + 1,
              !.mode = IF r.forceAtomic THEN @ ELSE "percpu"]

(* percpu_ref_is_zero().  Swift: PercpuRef.isZero.                         *)
IsZero(r) == r.mode = "atomic" /\ r.count = 0

(* percpu_ref_reinit(): a killed reference that reached zero starts a new  *)
(* life with one reference.  Swift: PercpuRef.reinit().                    *)
Reinitialized(r) == [Resurrected(r) EXCEPT !.releases = 0]

=============================================================================
