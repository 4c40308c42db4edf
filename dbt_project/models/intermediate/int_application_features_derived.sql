{#
    Engineered features of every application, rebuilt one month at a time like the accumulated
    applications. The table keeps load_id for that bookkeeping; the application_features mart
    exposes the model's columns only.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month',
        on_schema_change='fail'
    )
}}

{%- set external_scores = ['ext_source_1', 'ext_source_2', 'ext_source_3'] -%}
{%- set document_flags = [] -%}
{%- for number in range(2, 22) -%}
    {%- do document_flags.append('flag_document_' ~ number) -%}
{%- endfor -%}
{%- set score_terms = [] -%}
{%- set squared_deviation_terms = [] -%}
{%- for column in external_scores -%}
    {%- do score_terms.append('coalesce(' ~ column ~ ', 0)') -%}
    {%- do squared_deviation_terms.append(
        'coalesce((' ~ column ~ ' - ext_source_mean) * (' ~ column ~ ' - ext_source_mean), 0)'
    ) -%}
{%- endfor -%}
{%- set score_sum = score_terms | join(' + ') -%}
{%- set squared_deviation_sum = squared_deviation_terms | join(' + ') -%}

with

month_applications as (

    {{ rows_to_rebuild(ref('int_applications_accumulated')) }}

),

amount_ratios as (

    select
        *,
        {{ safe_divide('amt_credit', 'amt_income_total') }} as credit_income_ratio,
        {{ safe_divide('amt_annuity', 'amt_income_total') }} as annuity_income_ratio,
        {{ safe_divide('amt_annuity', 'amt_credit') }} as annuity_credit_ratio,
        {{ safe_divide('amt_goods_price', 'amt_credit') }} as goods_credit_ratio,
        {{ safe_divide('amt_income_total', 'cnt_fam_members') }} as income_per_family_member,
        -- The part of the loan not spent on the goods (fees, insurance); null without a goods
        -- price, as for some revolving loans.
        amt_credit - amt_goods_price as credit_goods_difference
    from month_applications

),

durations as (

    -- days_* count days before the application, so they are negative.
    select
        *,
        {{ safe_divide('-days_birth', 365.25) }} as age_years,
        {{ safe_divide('-days_employed', 365.25) }} as employment_years,
        {{ safe_divide('days_employed', 'days_birth') }} as employment_age_ratio,
        {{ safe_divide('days_id_publish', 'days_birth') }} as id_publish_age_ratio,
        {{ safe_divide('days_last_phone_change', 'days_birth') }} as phone_change_age_ratio
    from amount_ratios

),

external_score_presence as (

    select
        *,
        (
            {%- for column in external_scores %}
                case when {{ column }} is null then 0 else 1 end
                {{- ' +' if not loop.last }}
            {%- endfor %}
        ) as ext_source_count
    from durations

),

external_score_summary as (

    select
        *,
        {{ least_present(external_scores) }} as ext_source_min,
        {{ greatest_present(external_scores) }} as ext_source_max,
        {{ safe_divide(score_sum, 'ext_source_count') }} as ext_source_mean,
        {{ external_scores | join(' * ') }} as ext_source_product,
        -- ext_source_1 is missing for about half of the applicants, so the product of all three
        -- is often null while this one is not.
        ext_source_2 * ext_source_3 as ext_source_2_3_product
    from external_score_presence

),

external_score_spread as (

    -- Population standard deviation of the scores present.
    select
        *,
        sqrt({{ safe_divide(squared_deviation_sum, 'ext_source_count') }}) as ext_source_std
    from external_score_summary

),

completeness as (

    select
        *,
        (
            {%- for column in applicant_columns() %}
                case when {{ column }} is null then 1 else 0 end
                {{- ' +' if not loop.last }}
            {%- endfor %}
        ) as missing_field_count,
        (
            {%- for column in document_flags %}
                coalesce({{ column }}, 0){{ ' +' if not loop.last }}
            {%- endfor %}
        ) as document_flag_count
    from external_score_spread

),

final as (

    select * from completeness

)

select * from final
