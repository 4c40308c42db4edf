{{ config(materialized='table', tags=['monitoring']) }}

{#-
    PSI of the default probability of each scored month against the previous scored month.
    NOTE: the champion's scores on its own training months are not stored (`predictions` holds
    scored months only, and in-sample scores would be biased), so the reference is the month
    scored before; the first scored month has no reference and a NULL PSI. When another model
    scored the reference month, the PSI mixes the change of model with the change of applicants.
-#}

with

predictions as (
    select * from {{ source('creditflow', 'predictions') }}
),

scored_months as (
    select
        score_month as month,
        min(model_id) as model_id,
        count(distinct model_id) as models,
        count(*) as scored_rows,
        avg(default_probability) as mean_default_probability
    from predictions
    group by score_month
),

month_pairs as (
    select
        month,
        lag(month) over (order by month) as reference_month,
        lag(model_id) over (order by month) as reference_model_id
    from scored_months
),

score_values as (
    select
        score_month as month,
        default_probability as value_num,
        count(*) as row_count
    from predictions
    group by score_month, default_probability
),

reference_values as (
    select
        month_pairs.month,
        score_values.value_num,
        score_values.row_count
    from month_pairs
    inner join score_values
        on month_pairs.reference_month = score_values.month
),

compared_months as (
    select month
    from month_pairs
    where reference_month is not null
),

reference_cut_points as (
    {{ monitoring_quantile_cut_points('reference_values', 'month') }}
),

score_bins as (
    {{ monitoring_bins_from_cut_points('reference_cut_points', 'compared_months', 'month') }}
),

binned_month as (
    select
        score_bins.month,
        score_bins.bin_number,
        sum(score_values.row_count) as month_rows
    from score_bins
    inner join score_values
        on
            score_bins.month = score_values.month
            and {{ monitoring_value_in_bin('score_values.value_num', 'score_bins') }}
    group by score_bins.month, score_bins.bin_number
),

binned_reference as (
    select
        score_bins.month,
        score_bins.bin_number,
        sum(reference_values.row_count) as reference_rows
    from score_bins
    inner join reference_values
        on
            score_bins.month = reference_values.month
            and {{ monitoring_value_in_bin('reference_values.value_num', 'score_bins') }}
    group by score_bins.month, score_bins.bin_number
),

bin_shares as (
    select
        score_bins.month,
        score_bins.bin_number,
        coalesce(binned_month.month_rows, 0)
        / cast(
            nullif(sum(binned_month.month_rows) over (partition by score_bins.month), 0)
            as {{ type_double() }}
        )
            as month_share,
        coalesce(binned_reference.reference_rows, 0)
        / cast(
            nullif(
                sum(binned_reference.reference_rows) over (partition by score_bins.month), 0
            )
            as {{ type_double() }}
        )
            as reference_share
    from score_bins
    left join binned_month
        on score_bins.month = binned_month.month and score_bins.bin_number = binned_month.bin_number
    left join binned_reference
        on
            score_bins.month = binned_reference.month
            and score_bins.bin_number = binned_reference.bin_number
),

month_psi as (
    select
        month,
        count(*) as bins,
        sum({{ monitoring_psi_term('month_share', 'reference_share') }}) as psi
    from bin_shares
    group by month
),

final as (
    select
        scored_months.month,
        scored_months.model_id,
        scored_months.models,
        month_pairs.reference_month,
        month_pairs.reference_model_id,
        scored_months.scored_rows,
        scored_months.mean_default_probability,
        month_psi.bins,
        month_psi.psi,
        scored_months.model_id = month_pairs.reference_model_id as is_same_model
    from scored_months
    inner join month_pairs
        on scored_months.month = month_pairs.month
    left join month_psi
        on scored_months.month = month_psi.month
)

select * from final
