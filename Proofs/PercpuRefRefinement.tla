------------------------- MODULE PercpuRefRefinement -------------------------
(***************************************************************************)
(* Claim: percpu_ref's per-CPU representation (Spec/PercpuRef.tla) refines *)
(* a plain atomic count (AtomicCount.tla).                                 *)
(*                                                                         *)
(* Refinement mapping.  A thread that has seen percpu mode but not yet     *)
(* touched its CPU's counter has, abstractly, already done its get or put: *)
(* that flag read is the linearization point.  So the abstract count is    *)
(* the atomic count (bias excluded) plus every per-CPU counter plus the    *)
(* pending increments minus the pending decrements, less the reference a   *)
(* switch in flight holds for itself.  The abstract mode is "percpu" while *)
(* the ATOMIC flag is clear, "switching" while the switch callback is      *)
(* pending, "atomic" afterwards.                                           *)
(***************************************************************************)
EXTENDS PercpuRef, TLC

PendingDelta(t) ==
    CASE pending[t] = "inc" -> 1
      [] pending[t] = "dec" -> -1
      [] OTHER -> 0

PendingNet == SumOver([t \in Threads |-> PendingDelta(t)], Threads)

AbstractRef ==
    [count |-> ref.count + PercpuSum + PendingNet
                 - (IF ref.switching THEN 1 ELSE 0),
     mode |-> IF ~ref.atomicFlag THEN "percpu"
              ELSE IF ref.switching THEN "switching" ELSE "atomic",
     dead |-> ref.dead,
     forceAtomic |-> ref.forceAtomic,
     releases |-> ref.releases]

Abstract == INSTANCE AtomicCount WITH ref <- AbstractRef

RefinesAtomicCount == Abstract!Spec

AbstractTypeOK == Abstract!TypeOK
AbstractCountIsHeldReferences == Abstract!CountIsHeldReferences
AbstractReleaseOnlyWhenUnheld == Abstract!ReleaseOnlyWhenUnheld

(* Same bound on per-CPU drift as Spec/MCPercpuRef.tla.                    *)
PcpuBounded == \A c \in CPUs : ref.pcpu[c] \in -2..2
=============================================================================
